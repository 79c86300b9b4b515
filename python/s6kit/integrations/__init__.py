"""Drop-in integrations: transformers Mamba models and code written for mamba_ssm."""
