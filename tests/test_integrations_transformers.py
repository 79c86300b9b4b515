"""transformers' Mamba models run on s6kit after patch(): same weights, same outputs."""
import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import MambaConfig, MambaForCausalLM  # noqa: E402

from s6kit.integrations import transformers as s6kit_transformers  # noqa: E402

VOCAB = 64


@pytest.fixture(scope="module")
def hf_model():
    torch.manual_seed(0)
    config = MambaConfig(vocab_size=VOCAB, hidden_size=32, state_size=8, num_hidden_layers=2,
                         expand=2, conv_kernel=4, pad_token_id=0, eos_token_id=1, bos_token_id=1)
    return MambaForCausalLM(config).eval()


def _generate(model, prompt):
    with torch.no_grad():
        return model.generate(prompt, max_new_tokens=6, do_sample=False, attention_mask=torch.ones_like(prompt),
                              return_dict_in_generate=True, output_scores=True)


def test_patch_gives_the_same_logits_gradients_and_generation(hf_model):
    ids = torch.randint(2, VOCAB, (2, 14))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # left padding in the first row
    with torch.no_grad():
        want = hf_model(ids).logits
        want_masked = hf_model(ids, attention_mask=mask).logits
    want_gen = _generate(hf_model, ids[:, :5])

    s6kit_transformers.patch(hf_model)
    try:
        assert s6kit_transformers.is_patched(hf_model)
        with torch.no_grad():
            torch.testing.assert_close(hf_model(ids).logits, want, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(hf_model(ids, attention_mask=mask).logits, want_masked, rtol=1e-4, atol=1e-5)
        got_gen = _generate(hf_model, ids[:, :5])
        assert torch.equal(got_gen.sequences, want_gen.sequences)
        for got, want_step in zip(got_gen.scores, want_gen.scores):
            torch.testing.assert_close(got, want_step, rtol=1e-4, atol=1e-5)
        # gradients flow through s6kit's scan (the training path of the mixer)
        hf_model.train()
        loss = hf_model(ids, labels=ids).loss
        loss.backward()
        grads = [p.grad for n, p in hf_model.named_parameters() if "mixer" in n]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    finally:
        hf_model.eval()
        hf_model.zero_grad()
        s6kit_transformers.unpatch(hf_model)
    assert not s6kit_transformers.is_patched(hf_model)
    with torch.no_grad():
        torch.testing.assert_close(hf_model(ids).logits, want, rtol=0, atol=0)


def test_patch_runs_mixers_on_s6kit(hf_model, monkeypatch):
    calls = []
    real = s6kit_transformers.selective_scan_fn
    monkeypatch.setattr(s6kit_transformers, "selective_scan_fn", lambda *a, **k: calls.append(1) or real(*a, **k))
    s6kit_transformers.patch(hf_model)
    try:
        with torch.no_grad():
            hf_model(torch.randint(2, VOCAB, (1, 5)))
    finally:
        s6kit_transformers.unpatch(hf_model)
    assert len(calls) == hf_model.config.num_hidden_layers


def test_patch_refuses_models_without_mamba_mixers():
    with pytest.raises(ValueError, match="no transformers MambaMixer"):
        s6kit_transformers.patch(torch.nn.Linear(2, 2))
