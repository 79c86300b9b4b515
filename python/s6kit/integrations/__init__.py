"""Drop-in integrations: transformers Mamba models (``transformers.patch``) and code written for
mamba_ssm (``mamba_ssm_shim.install``). Importing them has no side effect; transformers itself is
imported only when ``patch`` is called."""
from . import mamba_ssm_shim, transformers

__all__ = ["mamba_ssm_shim", "transformers"]
