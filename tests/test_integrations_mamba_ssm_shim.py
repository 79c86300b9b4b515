"""Code written for mamba_ssm runs on s6kit through the opt-in shim.

Each test runs in a fresh interpreter: the shim edits sys.modules, and libraries that probe for
mamba_ssm at import time (transformers) must not see it in the other tests.
"""
import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_shim_serves_mamba_ssm_imports_and_runs():
    out = _run("""
        import importlib.util
        assert importlib.util.find_spec("mamba_ssm") is None  # no real mamba_ssm here
        import torch, s6kit
        import s6kit.integrations.mamba_ssm_shim as shim
        shim.install()
        from mamba_ssm import Mamba
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
        from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel
        from mamba_ssm.models.config_mamba import MambaConfig
        from mamba_ssm.ops.selective_scan_interface import mamba_inner_fn
        from mamba_ssm.utils.generation import InferenceParams
        assert Mamba is s6kit.Mamba and selective_scan_fn is s6kit.selective_scan_fn
        block = Mamba(d_model=16, d_state=4, d_conv=4, expand=2)
        h = torch.randn(2, 7, 16)
        want = block(h)
        # mamba_ssm's fast path of the block, called the way mamba_ssm's Mamba.forward calls it
        got = mamba_inner_fn(block.in_proj(h).transpose(1, 2), block.conv1d.weight, block.conv1d.bias,
                             block.x_proj.weight, block.dt_proj.weight, block.out_proj.weight, None,
                             -torch.exp(block.A_log.float()), None, None, block.D.float(),
                             delta_bias=block.dt_proj.bias.float(), delta_softplus=True)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        model = MambaLMHeadModel(MambaConfig(d_model=16, n_layer=2, vocab_size=30))
        ids = torch.randint(0, 30, (1, 5))
        assert model(ids).logits.shape == (1, 5, 32)
        assert model.generate(ids, max_length=8).shape == (1, 8)
        try:
            from mamba_ssm import Mamba2
        except ImportError:
            pass
        else:
            raise AssertionError("Mamba2 is not provided and must not import")
        shim.uninstall()
        import sys
        assert not any(name.startswith("mamba_ssm") for name in sys.modules)
        print("ok")
    """)
    assert out.strip() == "ok"


def test_shim_refuses_to_hide_a_real_mamba_ssm_unless_forced(tmp_path):
    fake = tmp_path / "mamba_ssm"
    fake.mkdir()
    (fake / "__init__.py").write_text("REAL = True\n")
    out = _run(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import s6kit.integrations.mamba_ssm_shim as shim
        try:
            shim.install()
        except RuntimeError as err:
            assert "real mamba_ssm is importable" in str(err) and "force=True" in str(err)
        else:
            raise AssertionError("install() hid a real mamba_ssm")
        shim.install(force=True)
        import mamba_ssm
        assert not hasattr(mamba_ssm, "REAL") and shim.is_installed()
        shim.uninstall()
        import mamba_ssm
        assert mamba_ssm.REAL
        print("ok")
    """)
    assert out.strip() == "ok"
