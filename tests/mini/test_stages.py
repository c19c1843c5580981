"""Stages are reused only when built from the same settings and inputs; anything else rebuilds them."""
import json

from libra.mini.stages import Stages, stage_key


def _pipeline(out, settings, calls):
    stages = Stages(out, 2)

    def first(folder):
        calls.append("first")
        (folder / "x.txt").write_text(str(settings["a"]))

    def second(folder):
        calls.append("second")
        (folder / "y.txt").write_text("y")

    stages.run("first", first, {"a": settings["a"]})
    stages.run("second", second, {"b": settings["b"]}, ("first",))
    return stages


def test_same_settings_reuse_everything(tmp_path):
    calls = []
    _pipeline(tmp_path, {"a": 1, "b": 1}, calls)
    again = _pipeline(tmp_path, {"a": 1, "b": 1}, calls)
    assert calls == ["first", "second"] and again.reused == ["first", "second"]
    marker = json.loads((tmp_path / "first" / "done").read_text())
    assert marker["key"] == again.keys["first"] and marker["seconds"] >= 0


def test_a_changed_setting_rebuilds_the_stage_and_what_reads_it(tmp_path):
    calls = []
    _pipeline(tmp_path, {"a": 1, "b": 1}, calls)
    calls.clear()
    _pipeline(tmp_path, {"a": 1, "b": 2}, calls)
    assert calls == ["second"]  # first is reused
    calls.clear()
    stages = _pipeline(tmp_path, {"a": 2, "b": 2}, calls)
    assert calls == ["first", "second"] and stages.reused == []  # an input changed: its reader rebuilds too
    assert (tmp_path / "first" / "x.txt").read_text() == "2"


def test_unfinished_or_keyless_stages_rebuild_from_an_empty_folder(tmp_path):
    calls = []
    (tmp_path / "first").mkdir()
    (tmp_path / "first" / "stale.txt").write_text("half-written")
    (tmp_path / "second").mkdir()
    (tmp_path / "second" / "done").write_text("12.5\n")  # a marker from before stages had keys
    _pipeline(tmp_path, {"a": 1, "b": 1}, calls)
    assert calls == ["first", "second"] and not (tmp_path / "first" / "stale.txt").exists()


def test_key_depends_on_settings_and_inputs_only():
    assert stage_key({"a": 1, "b": 2}, ["k"]) == stage_key({"b": 2, "a": 1}, ["k"])
    assert stage_key({"a": 1}, ["k"]) != stage_key({"a": 1}, ["j"]) != stage_key({"a": 2}, ["j"])


def test_other_code_rebuilds_everything(tmp_path):
    """A stage built by other code (an edited trainer, template) is not reused, though its settings match."""
    calls = []
    for code, expect in (("v1", ["first", "second"]), ("v1", []), ("v2", ["first", "second"])):
        calls.clear()
        stages = Stages(tmp_path, 2, code=code)
        stages.run("first", lambda f: calls.append("first"), {"a": 1})
        stages.run("second", lambda f: calls.append("second"), {"b": 1}, ("first",))
        assert calls == expect


def test_code_digest_follows_file_contents_not_times(tmp_path):
    from libra.mini.stages import code_digest

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "t.txt").write_text("template\n")
    first = code_digest(tmp_path / "pkg")
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")  # rewritten, same content
    (tmp_path / "pkg" / "notes.md").write_text("not code")
    assert code_digest(tmp_path / "pkg") == first
    (tmp_path / "pkg" / "t.txt").write_text("template!\n")
    assert code_digest(tmp_path / "pkg") != first
