"""runner.hf and `moescale export`: our runs as exact transformers checkpoints, and back.

Three tiny runs (dense, E8 k1, E8 k2) are trained for a few steps on a small synthetic corpus
(so they have a tokenizer), exported, and loaded by the Auto classes; the exported model's
logits must equal ours within 1e-5 (float32) on random token batches, greedy generations
must be identical, and ``runner.hf.load`` must give back our model's exact weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from runner.data import CorpusCache  # noqa: E402
from runner.hf import export, load, run_model, to_hf_model  # noqa: E402
from runner.model import ModelConfig, seeded_model  # noqa: E402
from runner.train import TrainConfig, train  # noqa: E402
from scaling.architecture import Architecture  # noqa: E402
from scaling.cli import main as cli_main  # noqa: E402
from scaling.hf_config import HFArchitecture  # noqa: E402

DATA = {"kind": "synthetic", "n_people": 40, "exposures": 4, "train_tokens": 20_000, "val_tokens": 2048, "eval_examples": 16}
SHAPES = {"dense": (1, 1), "e8k1": (8, 1), "e8k2": (8, 2)}


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """name -> run directory of a finished tiny run (24 steps, lr high enough to move the weights)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("runs")
    cache, dirs = CorpusCache(), {}
    for name, (e, k) in SHAPES.items():
        arch = {"d_model": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "d_ff": 32, "n_experts": e, "top_k": k,
                "vocab_size": 512, "seq_len": 64, "tied_embeddings": name == "e8k1"}  # fmt: skip
        c = TrainConfig.from_dict({"architecture": arch, "tokens": 512 * 24, "batch_tokens": 512, "data": DATA, "lr": 1e-2,
                                   "eval_examples": 16, "rope_theta": 500.0, "norm_eps": 1e-6})  # fmt: skip
        assert train(c, out, quiet=True, corpora=cache) == "finished"
        dirs[name] = out / c.run_id
    return dirs


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("hf")
    return {name: export(d, base / name) for name, d in runs.items()}


@pytest.mark.parametrize("name", list(SHAPES))
def test_exported_model_loads_with_auto_classes_and_matches_our_logits(runs, exported, name):
    ours = run_model(runs[name])
    hf = transformers.AutoModelForCausalLM.from_pretrained(exported[name], dtype=torch.float32).eval()
    expected = {"dense": "LlamaForCausalLM", "e8k1": "MoescaleMoeForCausalLM", "e8k2": "MixtralForCausalLM"}[name]
    assert type(hf).__name__ == expected
    arch = ours.config.arch
    assert sum(p.numel() for p in hf.parameters()) == arch.n_total
    counts = HFArchitecture.from_config(exported[name] / "config.json", seq_len=arch.seq_len)  # plan count --hf-config
    assert (counts.n_total, counts.n_active, counts.flops_per_token) == (arch.n_total, arch.n_active, arch.flops_per_token)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for seq in (64, 17):
            x = torch.randint(0, 512, (4, seq), generator=gen)
            a, b = ours(x)[0], hf(x).logits
            assert a.abs().max() > 0.5  # trained: not the near-zero logits of a fresh init
            torch.testing.assert_close(b, a, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list(SHAPES))
def test_greedy_generation_is_identical(runs, exported, name):
    ours = run_model(runs[name])
    hf = transformers.AutoModelForCausalLM.from_pretrained(exported[name], dtype=torch.float32).eval()
    prompt = torch.randint(0, 512, (3, 8), generator=torch.Generator().manual_seed(2))
    seq = prompt
    with torch.no_grad():
        for _ in range(24):  # our model has no KV cache: recompute the whole prefix each step
            seq = torch.cat([seq, ours(seq)[0][:, -1].argmax(-1, keepdim=True)], dim=1)
        out = hf.generate(prompt, max_new_tokens=24, do_sample=False, attention_mask=torch.ones_like(prompt))
    assert out.shape == seq.shape == (3, 32)
    assert torch.equal(out, seq)


def test_tokenizer_and_generation_config_load(runs, exported):
    from runner.data.tokenizer import Tokenizer

    ours = Tokenizer.load(runs["e8k2"] / "tokenizer.json")
    tok = transformers.AutoTokenizer.from_pretrained(exported["e8k2"])
    text = " ".join(ours.tokens[5:25])
    assert tok(text)["input_ids"] == ours.encode(text)
    assert tok.decode(ours.encode(text)) == text
    assert tok.pad_token == "<pad>" and tok.pad_token_id == ours.id("<pad>")
    gen = transformers.GenerationConfig.from_pretrained(exported["e8k2"])
    assert gen.do_sample is False and gen.eos_token_id is None and gen.pad_token_id == ours.id("<pad>")
    assert list(exported["e8k2"].glob("*.safetensors")) and not list(exported["e8k2"].glob("*.bin"))


@pytest.mark.parametrize("name", list(SHAPES))
def test_load_round_trips_our_weights(runs, exported, name):
    ours = run_model(runs[name])
    back = load(exported[name])
    assert back.config == ours.config
    a, b = ours.state_dict(), back.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_switch_top1_needs_our_class_because_mixtral_renormalizes():
    """With top_k = 1 Mixtral's gate is always 1; ours is the softmax probability, so a Mixtral
    export of an E8 k1 model would compute something else (what motivates MoescaleMoeForCausalLM)."""
    arch = Architecture(d_model=32, n_layers=1, n_heads=2, d_ff=32, n_experts=8, top_k=1, vocab_size=64, seq_len=16)
    ours = seeded_model(ModelConfig(arch, init_std=0.2), 0).eval()
    ours_hf = to_hf_model(ours)
    mixtral_cfg = transformers.MixtralConfig(**{k: v for k, v in ours_hf.config.to_dict().items()
                                                if k not in ("model_type", "architectures", "transformers_version")})
    mixtral = transformers.MixtralForCausalLM(mixtral_cfg).eval()
    mixtral.load_state_dict(ours_hf.state_dict())
    x = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b, c = ours(x)[0], ours_hf(x).logits, mixtral(x).logits
    torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    assert (c - a).abs().max() > 1e-2


def test_export_refuses_bad_input_and_leaves_nothing(runs, exported, tmp_path, capsys):
    assert cli_main(["export", str(runs["dense"]), "--out", str(exported["dense"])]) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli_main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "run.json" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.*"))
    assert cli_main(["export", str(runs["dense"]), "--out", str(tmp_path / "no" / "dir")]) == 2
    assert "does not exist" in capsys.readouterr().err
    running = tmp_path / "running"
    running.mkdir()
    run = json.loads((runs["dense"] / "run.json").read_text())
    (running / "run.json").write_text(json.dumps({**run, "status": "running"}))
    assert cli_main(["export", str(running), "--out", str(tmp_path / "y")]) == 2
    assert "only a finished run" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


def test_export_cli_writes_a_checkpoint(runs, tmp_path, capsys):
    out = tmp_path / "ckpt"
    assert cli_main(["export", str(runs["e8k2"]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "MixtralForCausalLM" in printed
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "mixtral" and cfg["num_local_experts"] == 8 and cfg["num_experts_per_tok"] == 2
    assert cfg["moescale"]["run_id"] == runs["e8k2"].name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------- lm-evaluation-harness


def test_lm_eval_accuracy_equals_our_evaluator(runs, tmp_path):
    """Our synthetic tasks through lm-eval (local YAML over JSONL): per example, lm-eval's loglikelihood
    is minus our answer NLL and its is_greedy our exact match; per task, the accuracy equals the
    ``accuracy`` row of ``runner.evaluate.evaluate`` on the same examples."""
    pytest.importorskip("lm_eval")
    from runner.data import load_corpus
    from runner.evaluate import evaluate, score_answers
    from runner.hf_eval import local_problems, run_harness

    d = runs["e8k2"]
    results, ours = run_harness(d, max_examples=24, batch_size=8, work_dir=tmp_path / "tasks", log_samples=True)
    assert ours == {"moescale_facts": "memorization", "moescale_pointer": "reasoning", "moescale_arith": "reasoning"}
    assert sorted(p.name for p in (tmp_path / "tasks").iterdir())[:2] == ["moescale_arith.jsonl", "moescale_arith.yaml"]
    model = run_model(d)
    config = TrainConfig.from_dict(json.loads((d / "run.json").read_text())["config"])
    ev = evaluate(model, load_corpus(config.data, config.seed), n_total=config.architecture.n_total, max_examples=24)
    hits = 0
    for task, (_, prompts, answers) in local_problems(d, 24).items():
        name = "moescale_" + task
        assert results["results"][name]["acc,none"] == ev.value(task, "accuracy")
        assert results["n-samples"][name]["effective"] == len(prompts) == min(24, len(prompts))
        nll, exact = score_answers(model, prompts, answers)
        samples = sorted(results["samples"][name], key=lambda s: s["doc_id"])
        ll = np.array([s["resps"][0][0][0] for s in samples])
        greedy = np.array([bool(s["resps"][0][0][1]) for s in samples])
        np.testing.assert_allclose(ll, -nll, rtol=0, atol=1e-4)
        assert (greedy == exact).all()
        hits += int(exact.sum())
    assert hits > 0  # some answers are right, so the agreement is not just all-zero


def test_eval_cli_records_rows_that_ingest_reads(runs, tmp_path, capsys):
    pytest.importorskip("lm_eval")
    import shutil

    from scaling.ingest import ingest
    from scaling.store import Store

    d = tmp_path / runs["e8k2"].name
    shutil.copytree(runs["e8k2"], d)
    before = (d / "evals.jsonl").read_text().splitlines()
    argv = ["eval", str(d), "--harness", "lm-eval", "--tasks", "arith", "pointer", "--max-examples", "8", "--task-kind", "other"]
    for _ in range(2):  # a rerun replaces its rows
        assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "moescale_arith" in printed and "recorded 2 rows" in printed
    lines = [json.loads(x) for x in (d / "evals.jsonl").read_text().splitlines()]
    assert [json.loads(x) for x in before] == lines[: len(before)] and len(lines) == len(before) + 2
    new = {r["task"]: r for r in lines[len(before):]}
    last = json.loads(before[-1])
    assert new["moescale_arith"]["step"] == last["step"] and new["moescale_arith"]["tokens"] == last["tokens"]
    assert new["moescale_arith"]["task_kind"] == "reasoning" and new["moescale_arith"]["metric"] == "accuracy"
    assert new["moescale_pointer"]["n_examples"] == 8
    with Store(tmp_path / "s.duckdb") as store:
        ingest(store, [d], progress=False)
        final = store.table("final")
    assert final["moescale_arith_accuracy"][0] == new["moescale_arith"]["value"]
    assert cli_main(["eval", str(d), "--harness", "lm-eval", "--tasks", "no_such_task_xyz"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: lm-eval: unknown task(s) no_such_task_xyz; ours: facts, pointer, arith")


# ----------------------------------------------------------------------------- GRPO post-training (TRL)


def test_posttrain_grpo_writes_a_linked_resumable_run(runs, tmp_path, capsys):
    pytest.importorskip("trl")
    import shutil

    from scaling.ingest import ingest
    from scaling.store import Store

    base = runs["e8k1"]  # top-1: TRL loads our registered MoescaleMoeForCausalLM, reference model included
    argv = ["posttrain", str(base), "--method", "grpo", "--out", str(tmp_path / "a"), "--steps", "4",
            "--prompts-per-step", "4", "--num-generations", "4", "--checkpoint-interval", "2", "--max-examples", "64"]
    assert cli_main(argv) == 0
    d = Path(capsys.readouterr().out.strip().splitlines()[-1].split()[-1])
    run = json.loads((d / "run.json").read_text())
    assert run["status"] == "finished" and d.name.startswith(base.name + "-grpo-")
    assert run["config"]["stage"] == "grpo" and run["config"]["base_run_id"] == base.name
    assert run["config"]["grpo"]["steps"] == 4 and run["config"]["base_config"]["architecture"]["top_k"] == 1
    metrics = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    assert all({"reward", "kl", "loss"} <= m.keys() and 0 <= m["reward"] <= 1 for m in metrics)
    evals = [json.loads(x) for x in (d / "evals.jsonl").read_text().splitlines()]
    assert {(e["step"], e["task"], e["metric"]) for e in evals} == {
        (s, t, m) for s in (0, 4) for t in ("pointer", "arith") for m in ("accuracy", "mean_reward")}
    # step 0 is the base model: its held-out greedy accuracy is our evaluator's on the odd examples
    from runner.evaluate import score_answers
    from runner.hf_eval import local_problems

    _, prompts, answers = local_problems(base, 64)["arith"]
    exact = score_answers(run_model(base), prompts[1::2], answers[1::2])[1]
    assert [e["value"] for e in evals if (e["step"], e["task"], e["metric"]) == (0, "arith", "accuracy")] == [exact.mean()]

    # interrupted after the checkpoint at step 2: resumes there and ends as the uninterrupted run did
    b = tmp_path / "b" / d.name
    shutil.copytree(d, b)
    shutil.rmtree(b / "grpo_checkpoints" / "checkpoint-4")
    (b / "run.json").write_text(json.dumps({**run, "status": "running"}))
    with open(b / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 5, "tokens": 1, "reward": 0.5}\n{"step": 6, "tok')
    assert cli_main([*argv[:5], str(tmp_path / "b"), *argv[6:]]) == 0
    again = [json.loads(x) for x in (b / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in again] == [1, 2, 3, 4]
    for x, y in zip(again, metrics):
        assert x == pytest.approx(y, abs=1e-6)
    assert json.loads((b / "run.json").read_text())["status"] == "finished"
    with Store(tmp_path / "s.duckdb") as store:
        ingest(store, [d], progress=False)
        assert store.sql("SELECT count(*) AS n FROM evals")["n"][0] == 8

    # test-time compute on the post-trained run (its model/ folder) and on a copy of the base run
    import shutil as _sh

    base_copy = tmp_path / "base" / base.name
    _sh.copytree(base, base_copy)
    for rd in (d, base_copy):
        assert cli_main(["eval", str(rd), "--samples", "1", "4", "--temperature", "0", "--max-examples", "64"]) == 0
        assert cli_main(["eval", str(rd), "--samples", "2", "--seed", "3", "--max-examples", "64"]) == 0
        rows = [json.loads(x) for x in (rd / "evals.jsonl").read_text().splitlines()]
        last = max(r["step"] for r in rows)
        model = run_model(rd)
        for task in ("pointer", "arith"):
            _, prompts, answers = local_problems(rd, 64)[task]
            greedy = score_answers(model, prompts, answers)[1].mean()
            got = {r["metric"]: r["value"] for r in rows if r["task"] == task and r["step"] == last}
            assert got["pass_at_1"] == got["majority_at_1"] == got["pass_at_4"] == got["majority_at_4"] == greedy
            assert 0 <= got["majority_at_2"] <= got["pass_at_2"] <= 1
    assert not torch.equal(run_model(d).state_dict()["tok_emb.weight"], run_model(base).state_dict()["tok_emb.weight"])
