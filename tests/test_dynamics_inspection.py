"""inspect_model on Hugging Face's MambaForCausalLM and on plain torch modules with the
mamba_ssm / s6kit attribute layout; the eigenvalues against numpy; plot_report; the CLI."""
import argparse
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

pytest.importorskip("scipy")
pytest.importorskip("matplotlib")
from s6kit import selective_scan_ref  # noqa: E402
from s6kit.dynamics import inspect_model, plot_report  # noqa: E402
from s6kit.dynamics.cli import register  # noqa: E402
from s6kit.dynamics.inspection import mu_eigenvalues  # noqa: E402


class MimicMixer(nn.Module):
    """A Mamba mixer with mamba_ssm's attribute names (in_proj, conv1d, x_proj, dt_proj, A_log, D,
    out_proj, d_state, dt_rank, d_inner), running the reference selective scan."""

    def __init__(self, d_model=8, d_state=3, expand=2, dt_rank=2, d_conv=3):
        super().__init__()
        self.d_state, self.dt_rank, self.d_inner = d_state, dt_rank, expand * d_model
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(self.d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, self.d_inner)
        self.A_log = nn.Parameter(torch.log(torch.arange(1.0, d_state + 1)).repeat(self.d_inner, 1))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def forward(self, h):
        length = h.shape[1]
        x, z = self.in_proj(h).transpose(1, 2).chunk(2, dim=1)
        x = F.silu(self.conv1d(x)[..., :length])
        dt, B, C = self.x_proj(x.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = self.dt_proj(dt).transpose(1, 2)
        y = selective_scan_ref(x, delta, -torch.exp(self.A_log), B.transpose(1, 2), C.transpose(1, 2), self.D, z,
                               delta_softplus=True)
        return self.out_proj(y.transpose(1, 2))


class ResidualBlock(nn.Module):
    """x + mixer(norm(x)): the stream is the block's output."""

    def __init__(self, d_model):
        super().__init__()
        self.norm, self.mixer = nn.LayerNorm(d_model), MimicMixer(d_model)

    def forward(self, x):
        return x + self.mixer(self.norm(x))


class PairBlock(nn.Module):
    """mamba_ssm's Block: returns (mixer output, residual); the stream is their sum."""

    def __init__(self, d_model):
        super().__init__()
        self.norm, self.mixer = nn.LayerNorm(d_model), MimicMixer(d_model)

    def forward(self, hidden, residual=None):
        residual = hidden if residual is None else hidden + residual
        return self.mixer(self.norm(residual)), residual


class MimicLM(nn.Module):
    def __init__(self, block=ResidualBlock, n_layer=3, d_model=8, vocab=32):
        super().__init__()
        self.embedding = nn.Embedding(vocab, d_model)
        self.layers = nn.ModuleList([block(d_model) for _ in range(n_layer)])
        self.pairs = block is PairBlock

    def forward(self, ids):
        h, residual = self.embedding(ids), None
        streams = [h]
        for layer in self.layers:
            if self.pairs:
                h, residual = layer(h, residual)
                streams.append(h + residual)
            else:
                h = layer(h)
                streams.append(h)
        return streams


def _stats(streams):
    norms = [s.norm(dim=-1).flatten() for s in streams]
    return np.array([[n.mean().item(), n.std(unbiased=False).item(), n.min().item(), n.max().item()] for n in norms])


@pytest.mark.parametrize("block", [ResidualBlock, PairBlock])
def test_token_norms_follow_the_residual_stream(block):
    torch.manual_seed(0)
    model = MimicLM(block)
    ids = torch.randint(0, 32, (2, 10))
    report = inspect_model(model, ids)
    assert [layer.name for layer in report.layers] == [f"layers.{i}.mixer" for i in range(3)]
    norms = report.token_norms
    assert norms.stages == ["input", "layers.0", "layers.1", "layers.2"]
    with torch.no_grad():
        expected = _stats(model(ids))
    got = np.stack([norms.mean, norms.std, norms.min, norms.max], axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_weight_sharing_gives_one_stage_per_call():
    torch.manual_seed(0)
    block = ResidualBlock(8)
    model = nn.Sequential(nn.Embedding(32, 8), block, block)
    report = inspect_model(model, torch.randint(0, 32, (2, 6)))
    assert report.token_norms.stages == ["input", "1", "1#2"]
    assert len(report.layers) == 1


def test_a_bare_mixer_is_its_own_layer():
    torch.manual_seed(0)
    mixer, x = MimicMixer(d_model=8), torch.randn(2, 5, 8)
    report = inspect_model(mixer, x)
    assert report.token_norms.stages == ["input", "(model)"]
    with torch.no_grad():
        expected = _stats([x, mixer(x)])
    np.testing.assert_allclose(report.token_norms.mean, expected[:, 0], rtol=1e-5)


def test_eigenvalues_match_numpy():
    rng = np.random.default_rng(0)
    for n, d in [(4, 20), (4, 8), (5, 6)]:  # d > 2N (QR path) and d <= 2N (direct)
        s_b, s_c = rng.normal(size=(n, d)), rng.normal(size=(n, d))
        full = np.linalg.eigvalsh(0.5 * (s_c.T @ s_b + s_b.T @ s_c))
        got = mu_eigenvalues(s_b, s_c)
        assert got.size == min(d, 2 * n)
        np.testing.assert_allclose(np.sort(np.r_[got, np.zeros(d - got.size)]), full, atol=1e-10)
        # sym(C^T B) = ((C+B)^T (C+B) - (C-B)^T (C-B)) / 4: at most N positive and N negative
        assert np.sum(got > 1e-9) <= n and np.sum(got < -1e-9) <= n


def test_known_spectrum_through_x_proj():
    """S_C = Q^T, S_B = diag(lam) Q^T with orthonormal Q: sym(S_C^T S_B) = Q diag(lam) Q^T."""
    mixer = MimicMixer(d_model=8, d_state=3, dt_rank=2)
    lam = np.array([-2.0, 0.5, 3.0])
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(16, 3)))
    w = np.concatenate([np.ones((2, 16)), lam[:, None] * q.T, q.T])
    with torch.no_grad():
        mixer.x_proj.weight.copy_(torch.from_numpy(w))
    layer = inspect_model(mixer).layers[0]
    np.testing.assert_allclose(np.sort(layer.eigenvalues[np.abs(layer.eigenvalues) > 1e-6]), lam, rtol=1e-6)
    assert (layer.n_positive, layer.n_negative, layer.n_zero) == (2, 1, 13)
    assert (layer.d_inner, layer.d_state, layer.dt_rank, layer.scenario) == (16, 3, 2, "divergent")


class NegativeIO(nn.Module):
    """x_proj.weight = [W_dt; -S; S]: S_C^T S_B = -S^T S, negative semidefinite of rank N."""

    def __init__(self, dt_rank, d_state):
        super().__init__()
        self.dt_rank, self.d_state = dt_rank, d_state

    def forward(self, w):
        w_dt, _, s = w.split([self.dt_rank, self.d_state, self.d_state])
        return torch.cat([w_dt, -s, s])


def test_parametrized_x_proj_is_read_through_the_attribute():
    torch.manual_seed(0)
    model = MimicLM()
    before = inspect_model(model).layers[0]
    assert before.scenario == "divergent" and before.n_positive == 3 and before.n_negative == 3
    for layer in model.layers:
        parametrize.register_parametrization(layer.mixer.x_proj, "weight", NegativeIO(2, 3))
    report = inspect_model(model, torch.randint(0, 32, (2, 5)))
    for layer in report.layers:
        assert (layer.n_positive, layer.n_negative, layer.n_zero, layer.scenario) == (0, 3, 13, "convergent")
    assert len(report.token_norms.stages) == 4


def test_transformers_mamba():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.MambaConfig(vocab_size=64, hidden_size=16, state_size=4, num_hidden_layers=2, expand=2,
                                      conv_kernel=4, time_step_rank=3, use_mambapy=False)
    model = transformers.MambaForCausalLM(config).eval()
    ids = torch.randint(0, 64, (2, 12))
    report = inspect_model(model, ids)
    assert [layer.name for layer in report.layers] == ["backbone.layers.0.mixer", "backbone.layers.1.mixer"]
    for layer, block in zip(report.layers, model.backbone.layers):
        assert (layer.d_inner, layer.d_state, layer.dt_rank) == (32, 4, 3)
        w = block.mixer.x_proj.weight.detach().double().numpy()
        s_b, s_c = w[3:7], w[7:11]
        full = np.linalg.eigvalsh(0.5 * (s_c.T @ s_b + s_b.T @ s_c))
        np.testing.assert_allclose(np.sort(np.r_[layer.eigenvalues, np.zeros(24)]), full, atol=1e-6)
        assert layer.n_positive + layer.n_negative + layer.n_zero == 32
    with torch.no_grad():
        hidden = model(ids, output_hidden_states=True).hidden_states  # after each block, then norm_f
        streams = [model.backbone.embeddings(ids)] + list(hidden[:2])
    norms = report.token_norms
    np.testing.assert_allclose(norms.mean, _stats(streams)[:, 0], rtol=1e-5)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["token_norms"]["stages"] == ["input", "backbone.layers.0", "backbone.layers.1"]
    assert len(data["layers"][0]["eigenvalues"]) == 8


def test_inspect_model_errors():
    with pytest.raises(ValueError, match="no Mamba mixer"):
        inspect_model(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="'model'"):
        inspect_model("not a model")
    mixer = MimicMixer()
    mixer.d_state = 5  # contradicts x_proj
    with pytest.raises(ValueError, match="d_state = 5"):
        inspect_model(mixer)
    bad = MimicMixer()
    bad.x_proj = nn.Linear(16, 7, bias=False)  # 7 - dt_rank 2 is odd
    with pytest.raises(ValueError, match="dt_rank \\+ 2 \\* d_state"):
        inspect_model(bad)


def test_plot_report(tmp_path):
    torch.manual_seed(0)
    model = MimicLM()
    with_norms = plot_report(inspect_model(model, torch.randint(0, 32, (2, 5))), tmp_path / "a.png")
    without = plot_report(inspect_model(model), tmp_path / "b.png")
    assert with_norms.read_bytes()[:4] == b"\x89PNG" and with_norms.stat().st_size > 10_000
    assert without.read_bytes()[:4] == b"\x89PNG" and without.stat().st_size > 5_000
    with pytest.raises(ValueError, match="'report'"):
        plot_report({"layers": []}, tmp_path / "c.png")


def _cli(argv):
    parser = argparse.ArgumentParser(prog="s6kit")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_inspect_transformers(tmp_path, capsys):
    pytest.importorskip("transformers")
    out = tmp_path / "inspect"
    assert _cli(["dynamics", "inspect", "--model", "transformers", "--layers", "2", "--batch", "2",
                 "--seq-len", "8", "--out", str(out)]) == 0
    data = json.loads((out / "inspect.json").read_text())
    assert len(data["layers"]) == 2 and len(data["token_norms"]["mean"]) == 3
    assert (out / "inspect.png").stat().st_size > 10_000
    assert "backbone.layers.1.mixer" in capsys.readouterr().out


def test_cli_inspect_random_s6kit(tmp_path):
    import s6kit

    argv = ["dynamics", "inspect", "--model", "random-s6kit", "--layers", "2", "--batch", "2", "--seq-len", "8",
            "--out", str(tmp_path)]
    if not hasattr(s6kit, "MambaLMHeadModel"):
        with pytest.raises(SystemExit, match="needs s6kit.MambaLMHeadModel"):
            _cli(argv)
        return
    assert _cli(argv) == 0
    assert len(json.loads((tmp_path / "inspect.json").read_text())["layers"]) == 2


def test_cli_rejects_bad_options(capsys):
    with pytest.raises(SystemExit):
        _cli(["dynamics", "inspect", "--out", "x", "--layers", "0"])
    assert "positive integer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _cli(["dynamics", "figures"])  # --out is required


def test_cli_module_imports_without_scipy_or_matplotlib():
    """s6kit's command line registers the dynamics command without loading the optional extras."""
    import subprocess
    import sys

    code = "import sys, s6kit.dynamics.cli; print(sorted({'scipy', 'matplotlib'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_figures_calls_make_figures(tmp_path, monkeypatch, capsys):
    from s6kit.dynamics import figures

    seen = []
    monkeypatch.setattr(figures, "make_figures", lambda out: seen.append(out) or [tmp_path / "fig1.png"])
    assert _cli(["dynamics", "figures", "--out", str(tmp_path)]) == 0
    assert seen == [str(tmp_path)] and "fig1.png" in capsys.readouterr().out
