"""The language model and the vision classifier; torch.compile and bf16 autocast of a block."""
import argparse
import copy

import pytest
import torch
import torch.nn.functional as F

from s6kit import (InferenceParams, Mamba, MambaConfig, MambaLMHeadModel, MambaVisionClassifier,
                   set_scan_backend)
from s6kit.benchmarks import train as train_bench

VOCAB = 50  # padded to 56 (pad_vocab_size_multiple = 8)


def _lm(seed=0, **config):
    torch.manual_seed(seed)
    cfg = dict(d_model=16, n_layer=2, vocab_size=VOCAB, ssm_cfg={"d_state": 4})
    cfg.update(config)
    return MambaLMHeadModel(MambaConfig(**cfg))


def _expected_lm_keys(n_layer, d_model, d_state, vocab_padded, d_conv=4, expand=2, mlp_hidden=None):
    """mamba_ssm's MambaLMHeadModel state_dict (RMSNorm, tied embeddings), written out by hand."""
    d_inner, dt_rank = expand * d_model, -(-d_model // 16)
    keys = {"backbone.embedding.weight": (vocab_padded, d_model),
            "backbone.norm_f.weight": (d_model,),
            "lm_head.weight": (vocab_padded, d_model)}
    for i in range(n_layer):
        p = f"backbone.layers.{i}."
        keys.update({
            p + "norm.weight": (d_model,),
            p + "mixer.A_log": (d_inner, d_state),
            p + "mixer.D": (d_inner,),
            p + "mixer.in_proj.weight": (2 * d_inner, d_model),
            p + "mixer.conv1d.weight": (d_inner, 1, d_conv),
            p + "mixer.conv1d.bias": (d_inner,),
            p + "mixer.x_proj.weight": (dt_rank + 2 * d_state, d_inner),
            p + "mixer.dt_proj.weight": (d_inner, dt_rank),
            p + "mixer.dt_proj.bias": (d_inner,),
            p + "mixer.out_proj.weight": (d_model, d_inner),
        })
        if mlp_hidden:
            keys.update({p + "norm2.weight": (d_model,),
                         p + "mlp.fc1.weight": (2 * mlp_hidden, d_model),
                         p + "mlp.fc2.weight": (d_model, mlp_hidden)})
    return keys


@pytest.mark.parametrize("d_intermediate", [0, 100])
def test_lm_state_dict_has_mamba_ssm_keys_and_loads_strict(d_intermediate):
    model = _lm(n_layer=3, d_model=32, d_intermediate=d_intermediate)
    expected = _expected_lm_keys(3, 32, 4, 56, mlp_hidden=128 if d_intermediate else None)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    incoming = {k: torch.randn(s) for k, s in expected.items()}
    incoming["lm_head.weight"] = incoming["backbone.embedding.weight"]  # tied in the checkpoint
    model.load_state_dict(incoming, strict=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, incoming[key]), key
    assert model.lm_head.weight is model.backbone.embedding.weight


def test_save_and_load_pretrained_directory(tmp_path):
    model = _lm(ssm_cfg={"d_state": 4, "scalar_A": True})
    model.save_pretrained(tmp_path)
    loaded = MambaLMHeadModel.from_pretrained(tmp_path)
    ids = torch.randint(0, VOCAB, (1, 6))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=0)
    with pytest.raises(ValueError, match="local directory"):
        MambaLMHeadModel.from_pretrained(tmp_path / "missing")


def test_lm_matches_reference_scan_values_and_grads():
    model = _lm()
    ref = set_scan_backend(copy.deepcopy(model), "reference")
    ids = torch.randint(0, VOCAB, (2, 13))
    out, out_ref = model(ids).logits, ref(ids).logits
    torch.testing.assert_close(out, out_ref, rtol=1e-4, atol=1e-5)
    out.logsumexp(-1).sum().backward()
    out_ref.logsumexp(-1).sum().backward()
    for (name, p), p_ref in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_lm_cached_decoding_equals_full_forward():
    model = _lm(residual_in_fp32=False, d_intermediate=24).eval()
    ids = torch.randint(0, VOCAB, (2, 12))
    full = model(ids).logits
    params = InferenceParams(max_seqlen=12, max_batch_size=2)
    logits = [model(ids[:, :5], inference_params=params).logits]
    params.seqlen_offset = 5
    for t in range(5, 12):
        logits.append(model(ids[:, t:t + 1], inference_params=params).logits)
        params.seqlen_offset += 1
    torch.testing.assert_close(torch.cat(logits, dim=1), full, rtol=1e-5, atol=1e-5)


def test_generate_greedy_equals_recomputing_the_full_sequence():
    model = _lm().eval()
    prompt = torch.randint(0, VOCAB, (2, 4))
    out = model.generate(prompt, max_length=10, return_dict_in_generate=True, output_scores=True)
    assert out.sequences.shape == (2, 10) and torch.equal(out.sequences[:, :4], prompt)
    seq = prompt
    with torch.no_grad():
        for step in range(6):
            logits = model(seq).logits[:, -1, :VOCAB]
            torch.testing.assert_close(out.scores[step], logits, rtol=1e-5, atol=1e-5)
            seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out.sequences, seq)


def test_generate_sampling_is_seeded_and_restricted_to_top_k():
    model = _lm().eval()
    prompt = torch.randint(0, VOCAB, (3, 2))
    kwargs = dict(max_length=8, top_k=3, temperature=0.7, return_dict_in_generate=True, output_scores=True)
    a = model.generate(prompt, generator=torch.Generator().manual_seed(5), **kwargs)
    b = model.generate(prompt, generator=torch.Generator().manual_seed(5), **kwargs)
    assert torch.equal(a.sequences, b.sequences)
    for step, scores in enumerate(a.scores):
        top3 = scores.topk(3, dim=-1).indices
        assert (top3 == a.sequences[:, 2 + step, None]).any(-1).all()
    assert int(a.sequences.max()) < VOCAB  # the padded vocabulary is never sampled


def test_lm_refuses_reordering_unless_allowed_and_then_leaks():
    with pytest.raises(ValueError, match="non-causal.*allow_noncausal_reorder"):
        _lm(ssm_cfg={"d_state": 4, "reorder": True})
    model = _lm(ssm_cfg={"d_state": 4, "reorder": True}, allow_noncausal_reorder=True).eval()
    ids = torch.randint(0, VOCAB, (1, 9))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % VOCAB
    with torch.no_grad():
        leak = (model(ids).logits[:, 0] - model(changed).logits[:, 0]).abs().max()
    assert leak > 1e-5  # position 0 sees the last token
    out = model.generate(ids[:, :3], max_length=6)  # no cached decoding: recomputes the sequence
    assert out.shape == (1, 6)
    causal = _lm().eval()
    with torch.no_grad():
        torch.testing.assert_close(causal(ids).logits[:, :-1], causal(changed).logits[:, :-1], rtol=0, atol=0)


def test_lm_io_spectrum_per_layer_and_unsupported_configs():
    model = _lm(ssm_cfg={"d_state": 4, "io_spectrum": "negative"})
    spectra = model.io_eigenvalues()
    assert len(spectra) == 2
    for ev in spectra:
        assert int((ev < -1e-9).sum()) == 4 and int((ev > 1e-9).sum()) == 0
    with pytest.raises(ValueError, match="Mamba1"):
        _lm(ssm_cfg={"layer": "Mamba2"})
    with pytest.raises(ValueError, match="attention"):
        _lm(attn_layer_idx=[1])
    with pytest.raises(ValueError, match="input_ids"):
        _lm()(torch.randn(1, 4))


def test_vision_classifier_reorders_first_mixer_of_each_stage_and_learns():
    torch.manual_seed(0)
    model = MambaVisionClassifier(num_classes=4, dims=(16, 32), depths=(2, 1), d_state=4)
    flags = [[block.mixer.reorder for block in stage] for stage in model.stages]
    assert flags == [[True, False], [True]]
    images, labels = torch.randn(8, 3, 16, 16), torch.randint(0, 4, (8,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert model.stages[0][0].mixer.token_reorder.K.grad.abs().sum() > 0


def test_vision_mixer_matches_reference_scan():
    torch.manual_seed(0)
    model = MambaVisionClassifier(num_classes=3, dims=(16,), depths=(1,), d_state=4, reorder_hard=True)
    ref = set_scan_backend(copy.deepcopy(model), "reference")
    images = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(model(images), ref(images), rtol=1e-4, atol=1e-5)


def _tiny_block():
    torch.manual_seed(0)
    return Mamba(8, d_state=4, d_conv=2, expand=1, layer_idx=0)


@pytest.mark.parametrize("options", [{}, {"io_spectrum": "positive", "reorder": True}], ids=["plain", "options"])
def test_compile_fullgraph_aot_eager_forward_backward(options):
    torch.manual_seed(0)
    block = Mamba(8, d_state=4, d_conv=2, expand=1, **options)
    x = torch.randn(2, 6, 8, requires_grad=True)
    block(x).square().sum().backward()
    want_x, want = x.grad.clone(), {n: p.grad.clone() for n, p in block.named_parameters()}
    x.grad = None
    block.zero_grad()
    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    compiled(x).square().sum().backward()
    torch.testing.assert_close(x.grad, want_x)
    for name, p in block.named_parameters():
        torch.testing.assert_close(p.grad, want[name], msg=name)


def test_compile_fullgraph_inductor_forward_backward():
    block = _tiny_block()
    x = torch.randn(1, 5, 8, requires_grad=True)
    want = block(x)
    want.sum().backward()
    want_grad = x.grad.clone()
    x.grad = None
    torch._dynamo.reset()
    compiled = torch.compile(block, fullgraph=True)  # inductor: generates and compiles C++
    got = compiled(x)
    got.sum().backward()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x.grad, want_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("options", [{}, {"scalar_A": True, "reorder": True}], ids=["plain", "options"])
def test_bf16_autocast_forward_backward(options):
    torch.manual_seed(0)
    block = Mamba(16, d_state=4, **options)
    x = torch.randn(2, 10, 16, requires_grad=True)
    want = block(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = block(x)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, rtol=5e-2, atol=5e-2 * want.abs().max().item())
    got.float().sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_training_benchmark_runs_both_backends(capsys):
    parser = argparse.ArgumentParser()
    train_bench.register(parser.add_subparsers())
    args = parser.parse_args(["train", "--d-model", "16", "--n-layer", "1", "--vocab", "32",
                              "--seqlen", "12", "--batch", "2", "--steps", "2", "--warmup", "1"])
    results = args.func(args)
    printed = capsys.readouterr().out
    assert "ms/step" in printed and "reference / s6kit" in printed
    assert results["ratio"] > 0
    # same weights, same batch, same optimiser: the two backends train identically
    assert abs(results["s6kit"]["first_loss"] - results["reference"]["first_loss"]) < 1e-4
