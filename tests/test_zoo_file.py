from pathlib import Path

import pytest

from pipeline.batching.zoo_file import DEFAULT_REGRESSION_FACTOR, load_zoo, read_zoo
from pipeline.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_entries_merge_defaults_config_file_and_inline_keys(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "a.yaml").write_text("model: demo.cnn\nsamples: 4\nopset: 15\n")
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(
        "defaults: {samples: 2, seed: 7}\n"
        "models:\n"
        "  - config: models/a.yaml\n"
        "    opset: 13\n"
        "  - {id: lin, model: demo.linear_regression}\n"
        "  - {model: demo.lstm, disabled: 'too slow here'}\n"
    )
    a, lin, lstm = load_zoo(zoo)
    assert (a.id, a.config.model, a.config.samples, a.config.opset, a.config.seed) == (
        "demo.cnn",
        "demo.cnn",
        4,
        13,
        7,
    )
    assert (lin.id, lin.config.samples, lin.disabled) == ("lin", 2, None)
    assert lstm.disabled == "too slow here"
    assert (a.memory_mb, lin.memory_mb) == (None, None)


def test_an_entry_s_memory_is_read_in_mb_and_kept_out_of_its_config(tmp_path):
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text("models:\n  - {model: demo.cnn, memory: 1.5G}\n  - {model: demo.lstm, memory: 700}\n")
    cnn, lstm = load_zoo(zoo)
    assert (cnn.memory_mb, lstm.memory_mb) == (1536.0, 700.0)
    # A placement hint, not a conversion setting: it does not change the model's cache key.
    assert "memory" not in cnn.config.model_dump()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: []\n", "non-empty list"),
        ("modles: []\n", "unknown top-level key"),
        ("models:\n  - {model: demo.cnn}\n  - {model: demo.cnn}\n", "two entries have the id 'demo.cnn'"),
        (
            "models:\n  - {model: demo.cnn, samles: 2}\n",
            "models[0]: unknown key 'samles' (did you mean 'samples'?)",
        ),
        ("models:\n  - {samples: 2}\n", "no `model`"),
        ("models:\n  - {model: demo.cnn, disabled: ''}\n", "must be a reason"),
        ("models:\n  - {id: ../up, model: demo.cnn}\n", "id '../up' must start with a letter or digit"),
        ("max_rss_mb: -5\nmodels:\n  - {model: demo.cnn}\n", "`max_rss_mb` must be a positive number"),
        ("models:\n  - {model: demo.cnn, memory: lots}\n", "`memory` 'lots': give a size such as 16G"),
        (
            "include: [nowhere.yaml]\nmodels:\n  - {model: demo.cnn}\n",
            "included zoo file nowhere.yaml not found",
        ),
        ("include: [zoo.yaml]\nmodels:\n  - {model: demo.cnn}\n", "forms a cycle"),
    ],
)
def test_bad_zoo_files_are_rejected_with_the_entry(tmp_path, text, message):
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_zoo(zoo)
    assert message in info.value.message


def test_shipped_zoo_files_load():
    for path in sorted((REPO / "configs" / "zoos").glob("*.yaml")):
        assert load_zoo(path), path


def test_included_zoos_keep_their_own_defaults_and_settings_are_read(tmp_path):
    (tmp_path / "other.yaml").write_text(
        "defaults: {samples: 5}\nmodels:\n  - {id: other-cnn, model: demo.cnn}\n"
    )
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(
        "defaults: {samples: 2}\nmax_rss_mb: 8000\nregression_factor: 3\ninclude: [other.yaml]\n"
        "models:\n  - {id: lin, model: demo.linear_regression}\n"
    )
    read = read_zoo(zoo)
    assert [(e.id, e.config.samples) for e in read.entries] == [("lin", 2), ("other-cnn", 5)]
    assert (read.max_rss_mb, read.regression_factor) == (8000, 3.0)
    assert read_zoo(tmp_path / "other.yaml").regression_factor == DEFAULT_REGRESSION_FACTOR


def test_an_id_repeated_across_an_include_is_rejected(tmp_path):
    (tmp_path / "other.yaml").write_text("models:\n  - {id: cnn, model: demo.cnn}\n")
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text("include: [other.yaml]\nmodels:\n  - {id: cnn, model: demo.cnn}\n")
    with pytest.raises(ConfigError, match="two entries have the id 'cnn'"):
        read_zoo(zoo)


@pytest.mark.parametrize(
    "name", ["smoke.yaml", "keras-applications-core.yaml", "keras-applications.yaml", "families.yaml"]
)
def test_shipped_zoos_load(name):
    entries = load_zoo(REPO / "configs" / "zoos" / name)
    assert entries


@pytest.mark.parametrize(
    ("entry", "what"),
    [
        ("{model: ../secret.keras}", "model"),
        ("{model: /etc/passwd.keras}", "model"),
        ("{config: ../elsewhere.yaml}", "config file"),
        ("{model: demo.cnn, converters: [../../evil.py]}", "converters file"),
        ("{model: demo.cnn, custom_objects: [/tmp/evil.py]}", "custom_objects file"),
        ("{model: inside/link.keras}", "model"),  # a symbolic link that leads out
    ],
)
def test_zoo_paths_cannot_leave_the_zoo_directory_unless_allowed(tmp_path, entry, what):
    base = tmp_path / "zoos"
    (base / "inside").mkdir(parents=True)
    (base / "inside" / "link.keras").symlink_to(tmp_path / "outside.keras")
    (tmp_path / "elsewhere.yaml").write_text("model: demo.cnn\n")
    zoo = base / "zoo.yaml"
    zoo.write_text(f"models:\n  - {entry}\n")
    with pytest.raises(ConfigError) as info:
        load_zoo(zoo)
    assert f"models[0]: {what} " in info.value.message
    assert "lies outside the zoo's base directory" in info.value.message
    assert "allow_paths_outside_base: true" in info.value.message
    zoo.write_text(f"allow_paths_outside_base: true\nmodels:\n  - {entry}\n")
    assert load_zoo(zoo)


def test_base_dir_widens_the_zoo_directory_and_includes_cannot_escape_it(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "a.yaml").write_text("model: demo.cnn\n")
    (tmp_path / "zoos").mkdir()
    zoo = tmp_path / "zoos" / "zoo.yaml"
    zoo.write_text("base_dir: ..\nmodels:\n  - {id: a, config: ../models/a.yaml}\n")
    assert [e.id for e in load_zoo(zoo)] == ["a"]
    # An included zoo may not widen its includer's base, nor allow outside paths itself.
    (tmp_path / "zoos" / "inc.yaml").write_text("base_dir: ../..\nmodels:\n  - {id: b, model: demo.cnn}\n")
    zoo.write_text("include: [inc.yaml]\nmodels:\n  - {id: a, model: demo.cnn}\n")
    with pytest.raises(ConfigError, match="base_dir .* lies outside"):
        load_zoo(zoo)
    (tmp_path / "zoos" / "inc.yaml").write_text(
        "allow_paths_outside_base: true\nmodels:\n  - {id: b, model: demo.cnn}\n"
    )
    with pytest.raises(ConfigError, match="only the top zoo file|set it in the top zoo file"):
        load_zoo(zoo)
