"""One flag style (underscores, as LightningCLI's): the old dashed spellings and `--overwrite true` still work, each
with one line naming the new spelling."""

import pytest

from ember.cli.flags import modernize
from ember.cli.main import main


def test_old_spellings_are_rewritten_with_one_line_each(caplog):
    argv = ["--memory-state", "m.st", "--session-bytes=64", "--ckpt_path", "k", "--memories-off"]
    assert modernize(argv) == ["--memory_state", "m.st", "--session_bytes=64", "--ckpt_path", "k", "--memories_off"]
    assert caplog.text.count("is now spelled") == 3 and "--memory_state" in caplog.text


@pytest.mark.parametrize(("given", "now"), [(["--overwrite", "true"], ["--overwrite"]),
                                            (["--overwrite=False"], []), (["--overwrite", "x"], ["--overwrite", "x"]),
                                            (["--overwrite"], ["--overwrite"])])
def test_overwrite_is_a_switch_and_its_old_value_form_still_works(given, now):
    assert modernize(["--out", "d", *given]) == ["--out", "d", *now]


def test_every_command_documents_the_new_spellings(capsys):
    for command, flag in (("session", "--memory_state"), ("stability", "--session_bytes"),
                          ("ablate", "--memories_off")):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert flag in capsys.readouterr().out


def test_an_unknown_command_names_every_command_and_the_near_one(caplog):
    assert main(["sesion", "--config", "x.yaml"]) == 2
    assert "did you mean session?" in caplog.text and "fit, validate, test, predict, plugins" in caplog.text
