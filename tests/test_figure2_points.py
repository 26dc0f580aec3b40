"""experiments.figure2_points: each SMART's points lie in the space it perturbs, as training computes them.

On a tiny BERT and a tiny RoBERTa (the real providers, a real StepContext): the token-embedding
panel holds the clean token embeddings, the corrected ``smart``'s and 1-1's; the embedding-output
panel holds the embedding block's output and ``smart_mtdnn``'s output + noise (‖noise‖∞ ≈ 1 per
token); the layer panel holds every variant's hidden states, MT-DNN's fed back as inputs_embeds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from experiments import figure2_points as fp
from tiny_models import SIGNAL_INIT, tiny_bert, tiny_roberta

SENTENCES = ["she reads a book in the park .", "he drives the red car .", "you sing a song at night .",
             "she and he played music ."]


@pytest.fixture(params=["bert", "roberta"])
def setup(request, tmp_path):
    from mt_dnn.cli_train import DEFAULT_TASK_DEF
    from mt_dnn.model import build_model
    from mt_dnn.run_setup import load_tokenizer
    from mt_dnn.task_def import load_task_defs

    make = tiny_bert if request.param == "bert" else tiny_roberta
    folder = make(tmp_path / request.param, initializer_range=SIGNAL_INIT)
    tokenizer = load_tokenizer(str(folder))
    tasks = load_task_defs(paths=[DEFAULT_TASK_DEF])
    torch.manual_seed(0)
    network = build_model(model_name=str(folder), tasks={"anli": tasks["anli"]}, tokenizer=tokenizer)
    network.eval()
    encoded = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    batch = {k: v for k, v in encoded.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    # positions of whole-word "she"/"he"/"you" tokens (with or without RoBERTa's word-start marker)
    words = {tokenizer.convert_tokens_to_ids(t) for w in ("she", "he", "you") for t in (w, "Ġ" + w)}
    words.discard(tokenizer.unk_token_id)
    where = torch.isin(batch["input_ids"], torch.tensor(sorted(words))).nonzero()
    assert len(where) >= 4
    return network, tokenizer, batch, where[:, 0], where[:, 1], tmp_path / "cache"


@pytest.mark.numerics
def test_each_variant_sits_in_the_space_it_perturbs(setup):
    network, tokenizer, batch, rows, cols, cache = setup
    torch.manual_seed(1)
    inputs = fp.perturbed_inputs(network=network, tokenizer=tokenizer, batch=batch, smart_step_size=None,
                                 noise_size=None, cache_dir=cache, task="anli")
    mtdnn = fp.mtdnn_input(network=network, tokenizer=tokenizer, batch=batch, smart_step_size=None, cache_dir=cache,
                           task="anli")
    panels, extra = fp.panels(network=network, batch=batch, rows=rows, cols=cols, inputs=inputs, mtdnn=mtdnn, layer=1)
    token, output, layer = panels
    assert (token.space, output.space, layer.space) == (fp.TOKEN_SPACE, fp.OUTPUT_SPACE, "layer 1")
    assert list(token.points) == [fp.CLEAN, fp.CORRECTED, fp.ONE_ONE]
    assert list(output.points) == [fp.CLEAN, fp.MTDNN]
    assert list(layer.points) == list(fp.VARIANTS)

    ids, mask, segments = batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")
    with torch.no_grad():
        table_rows = network.token_embeddings(ids)[rows, cols].numpy()
        block = network.embedding_output(input_ids=ids, token_type_ids=segments)
        clean_layer = network.encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True,
                                      **({"token_type_ids": segments} if segments is not None else {})).hidden_states[1]
        mtdnn_layer = network.encode(inputs_embeds=mtdnn.perturbed, attention_mask=mask, token_type_ids=segments,
                                     output_hidden_states=True, position_numbering="encoder_default").hidden_states[1]
    # token panel: the vocabulary's own rows; the corrected smart's δ is tiny (≈ η per token), 1-1's is not
    np.testing.assert_allclose(token.points[fp.CLEAN], table_rows, rtol=1e-6, atol=1e-7)
    corrected_step = np.abs(token.points[fp.CORRECTED] - table_rows).max(axis=1)
    assert (corrected_step > 0).all() and (corrected_step < 1e-3).all()
    assert np.abs(token.points[fp.ONE_ONE] - table_rows).max() > 1e-2
    # output panel: the embedding block's output, and MT-DNN's noise on it, ‖noise‖∞ ≈ 1 per token
    np.testing.assert_allclose(output.points[fp.CLEAN], block[rows, cols].numpy(), rtol=1e-5, atol=1e-6)
    # (max / (max + ε) with ε = 1e-6 against a max of a few σ = 1e-5: a little under 1)
    sup = np.abs(output.points[fp.MTDNN] - output.points[fp.CLEAN]).max(axis=1)
    assert ((sup > 0.9) & (sup <= 1.0 + 1e-6)).all(), sup
    # layer panel: clean = the ids' own pass; MT-DNN's = its sum fed back as inputs_embeds, the encoder numbering
    np.testing.assert_allclose(layer.points[fp.CLEAN], clean_layer[rows, cols].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.points[fp.MTDNN], mtdnn_layer[rows, cols].numpy(), rtol=1e-5, atol=1e-6)
    assert extra["reembedded"].shape == layer.points[fp.CLEAN].shape
    assert np.abs(extra["reembedded"] - layer.points[fp.CLEAN]).max() > 1e-3  # the block applied twice shows

    shares = fp.shares_percent(panels)
    assert set(shares) == {fp.CORRECTED, fp.ONE_ONE, fp.MTDNN}
    noise = output.points[fp.MTDNN] - output.points[fp.CLEAN]
    expected = 100 * (np.linalg.norm(noise, axis=1) / np.linalg.norm(output.points[fp.CLEAN], axis=1)).mean()
    assert shares[fp.MTDNN] == pytest.approx(expected)  # against the embedding output, not the token embedding
    assert shares[fp.CORRECTED] < 1 < shares[fp.MTDNN]
    assert 0 < mtdnn.logged_share < 1e-2 * shares[fp.MTDNN] / 100
