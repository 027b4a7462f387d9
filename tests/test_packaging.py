"""The two install paths (pip via pyproject.toml, conda via environment.yml)
stay identical, and CI runs exactly the README's test command."""

import re
import tomllib

import yaml

from course_utils.classroom import paths

ROOT = paths.COURSE_ROOT


def _pyproject_pins():
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])


def test_every_dependency_is_pinned_exactly():
    loose = [dep for dep in _pyproject_pins() if not re.fullmatch(r"[A-Za-z0-9_.-]+==[\w.+]+", dep)]
    assert not loose, f"pin these with ==, or stored outputs stop being reproducible: {loose}"
    assert "torch==2.13.0" in _pyproject_pins()


def test_environment_yml_lists_the_same_packages():
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict))
    assert set(pip_section) == _pyproject_pins(), (
        f"only in environment.yml: {sorted(set(pip_section) - _pyproject_pins())}; "
        f"only in pyproject.toml: {sorted(_pyproject_pins() - set(pip_section))}")
    assert "python>=3.11,<3.15" in environment["dependencies"]


def test_the_makefile_tries_every_python_that_pyproject_allows():
    import tomllib

    from packaging.specifiers import SpecifierSet

    allowed = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    tried = re.search(r"^SUPPORTED_PYTHONS := (.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1).split()
    assert sorted(tried) == [f"3.{minor}" for minor in range(8, 20) if f"3.{minor}" in allowed]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^\s*(make \w+)\s*$", readme.split("## Two commands")[1].split("\n## ")[0], re.MULTILINE)
    assert commands == ["make lab", "make test"], commands
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert ci[-1].strip() == "make test"


def test_readme_lesson_table_lists_every_lesson():
    from course_utils.classroom.lessons import all_lessons

    readme = (ROOT / "README.md").read_text()
    for lesson in all_lessons():
        assert re.search(rf"^\| {lesson.number} \| {re.escape(lesson.title)} \|", readme, re.MULTILINE), (
            f"README's lesson table has no row for {lesson.number} · {lesson.title}")


def _dry_run(target: str, *variables: str) -> str:
    """The commands `make target` would run, set-up taken as done."""
    import subprocess

    return subprocess.run(["make", "-n", "-s", target, "STAMP=Makefile", *variables], cwd=ROOT, text=True,
                          capture_output=True, check=True).stdout


def test_the_lab_starts_as_root_where_containers_run_everything_as_root():
    import os

    for target in ("lab", "practice"):
        command = next(line for line in _dry_run(target).splitlines() if "jupyter lab" in line)
        assert ("--allow-root" in command) == (os.geteuid() == 0), command
        remote = _dry_run(target, "LAB_ARGS=--no-browser --port=8899")
        assert "--no-browser --port=8899" in remote, remote


def test_the_practice_kernel_imports_the_practice_copy_s_sealed_course_utils():
    """Not the editable install of the authoring copy, whose answers are one
    `inspect.getsource` away; and an existing copy is updated, not rebuilt."""
    commands = _dry_run("practice")
    assert f"PYTHONPATH={ROOT}/practice " in commands, commands
    assert "course student --update practice" in commands


def test_lab_settings_keep_widget_state_and_whatever_else_is_there(tmp_path):
    import json

    from course_utils.classroom.lab import install_lab_settings

    path = tmp_path / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"}}))
    assert install_lab_settings(tmp_path) == path
    settings = json.loads(path.read_text())
    assert settings["@jupyter-widgets/jupyterlab-manager:plugin"]["saveState"] is True
    assert settings["@jupyterlab/apputils-extension:themes"]["theme"] == "JupyterLab Dark"
    assert "course_utils.classroom.lab" in (ROOT / "Makefile").read_text() + (ROOT / "postBuild").read_text()


def test_saving_a_lesson_from_jupyterlab_leaves_its_py_source_as_it_was(tmp_path):
    """What Ctrl+S does: jupytext's contents manager writes both files of the pair."""
    import asyncio
    import shutil

    from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
    from jupytext.async_contentsmanager import build_async_jupytext_contents_manager_class

    for name in ("jupytext.toml", "notebooks/02_qkv_by_hand.py", "notebooks/02_qkv_by_hand.ipynb"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    manager = build_async_jupytext_contents_manager_class(AsyncLargeFileManager)(root_dir=str(tmp_path))

    async def open_and_save_twice():
        for _ in range(2):
            model = await manager.get("notebooks/02_qkv_by_hand.ipynb")
            await manager.save(model, "notebooks/02_qkv_by_hand.ipynb")

    asyncio.run(open_and_save_twice())
    assert (tmp_path / "notebooks/02_qkv_by_hand.py").read_text() == (ROOT / "notebooks/02_qkv_by_hand.py").read_text()
