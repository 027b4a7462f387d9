"""JupyterLab settings the course needs, written into the environment's own
settings overrides (`python -m course_utils.classroom.lab`, run by `make
setup` and Binder's postBuild).

Saving a notebook whose quiz is drawn with widgets keeps the widgets' state,
so that the quiz still shows when the notebook is reopened, instead of
"Error displaying widget: model not found".
"""

import json
import sys
from pathlib import Path

SETTINGS = {"@jupyter-widgets/jupyterlab-manager:plugin": {"saveState": True}}


def install_lab_settings(prefix: str | Path = sys.prefix) -> Path:
    """Merge SETTINGS into {prefix}/share/jupyter/lab/settings/overrides.json,
    keeping whatever else is there; return the file's path."""
    path = Path(prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    try:
        current = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except ValueError:  # a broken file: the course's settings replace it rather than fail the set-up
        current = {}
    for plugin, values in SETTINGS.items():
        current[plugin] = {**current.get(plugin, {}), **values}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    print(f"JupyterLab settings for the course: {install_lab_settings()}")
