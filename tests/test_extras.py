"""Provider packages are pip extras: a config that picks a provider whose package is missing stops with one line
naming the extra. "Missing" is simulated by blocking the import (None in sys.modules), since dev installs them all."""

import sys

import pytest

from arastory.errors import ConfigError
from arastory.extras import require_extra
from tests.conftest import run_cli

BLOCK_AND_RUN = (
    "import runpy, sys; sys.modules[sys.argv[1]] = None; module = sys.argv[2]; "
    "sys.argv = [module, *sys.argv[3:]]; runpy.run_module(module, run_name='__main__', alter_sys=True)"
)


def test_translator_google_without_its_package_is_one_line_naming_the_extra(tmp_path):
    source = tmp_path / "en.jsonl"
    source.write_text('{"id": "a", "prompt": "P.", "story": "S."}\n', encoding="utf-8")
    proc = run_cli(
        [
            "-c",
            BLOCK_AND_RUN,
            "google.cloud.translate_v2",
            "arastory.translate",
            "translator=google",
            f"source={source}",
            f"out={tmp_path / 'out'}",
        ]
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "config error: translator: google-cloud-translate is not installed; pip install 'arastory[google]'"
    )


def test_every_openai_backed_config_and_vllm_name_themselves_and_their_extra(monkeypatch):
    from arastory.evaluate.judge import openai_judge
    from arastory.evaluate.systems import OpenAISystem
    from arastory.synthesize.generators import OpenAIGenerator
    from arastory.translate.llm_mt import LLMTranslator

    monkeypatch.setenv("OPENAI_API_KEY", "test-key-extras")
    monkeypatch.setitem(sys.modules, "openai", None)
    builds = {
        "judge": openai_judge,
        "translator": lambda: LLMTranslator("gpt-4o-mini"),
        "generator": lambda: OpenAIGenerator().client(),
        "system": lambda: OpenAISystem().check(),
    }
    for key, build in builds.items():
        with pytest.raises(ConfigError) as caught:
            build()
        assert str(caught.value) == f"config error: {key}: openai is not installed; pip install 'arastory[openai]'"

    from arastory.evaluate.systems import VLLMGenerator

    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ConfigError) as caught:
        VLLMGenerator("finetuned", "base", tokenizer=None, max_length=64)
    assert str(caught.value) == "config error: system.backend: vllm is not installed; pip install 'arastory[vllm]'"


def test_importing_the_package_does_not_import_any_provider():
    proc = run_cli(
        [
            "-c",
            "import sys; sys.modules['openai'] = None; import arastory.llm, arastory.translate.pipeline, "
            "arastory.synthesize.run, arastory.evaluate.pipeline; print('ok')",
        ]
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_an_installed_package_that_fails_on_its_own_dependency_is_not_called_missing(tmp_path, monkeypatch):
    broken = tmp_path / "camel_tools"
    broken.mkdir()
    (broken / "__init__.py").write_text("import a_dependency_that_is_not_there_xyz\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "camel_tools", raising=False)
    with pytest.raises(ModuleNotFoundError, match="a_dependency_that_is_not_there_xyz"):
        require_extra("camel_tools", "dialect_id")
    monkeypatch.delitem(sys.modules, "camel_tools", raising=False)
