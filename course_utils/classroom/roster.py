"""Who handed in what: a learner's key from the name an LMS gives a
downloaded submission, and a roster file that maps keys to the ids the LMS
imports grades by.

Without a roster, a notebook in a folder of its own is that folder's
learner's, and one directly in the submissions folder is named after its own
file, except for the names the LMSs write when an instructor downloads all
submissions, which are recognised so that one learner's files stay together:

- Canvas: `smithjohn_12345_67890_00_setup.ipynb` (name, user id, submission
  id, the file's own name; `_late_` after the name when late): learner
  `smithjohn_12345`;
- Moodle: a folder `John Smith_12345_assignsubmission_file_` per participant:
  learner `John Smith_12345`.

A roster (`course grade --roster roster.csv`) is a CSV file with a column
`id` (what the gradebook's rows are keyed by: a login, an SIS id, an e-mail
address) and any of `canvas_user_id`, `moodle_participant_id` and `aliases`
(other folder or file names of that learner, separated by `;`).
"""

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

CANVAS_FILE = re.compile(r"^(?P<name>[a-z]+)(?:_late)?_(?P<user>\d+)_(?P<submission>\d+)_(?P<file>.+)$")
MOODLE_FOLDER = re.compile(r"^(?P<name>.+)_(?P<participant>\d+)_assignsubmission_[a-z]+_?$")


def download_key(submission: Path) -> str:
    """The learner's key in a submission's path, relative to the submissions
    folder (see the module docstring)."""
    if len(submission.parts) > 1:
        folder = submission.parts[0]
        moodle = MOODLE_FOLDER.match(folder)
        return f"{moodle['name']}_{moodle['participant']}" if moodle else folder
    canvas = CANVAS_FILE.match(submission.name)
    return f"{canvas['name']}_{canvas['user']}" if canvas else submission.stem


class RosterError(ValueError):
    """A roster file that cannot be read as one."""


@dataclass
class Roster:
    ids: dict[str, str] = field(default_factory=dict)  # a key (see download_key) or alias -> the learner's id
    names: dict[str, str] = field(default_factory=dict)  # a learner's id -> their name, where the roster gives one
    canvas_user_ids: dict[str, str] = field(default_factory=dict)  # a learner's id -> their Canvas user id

    @classmethod
    def read(cls, path: Path) -> "Roster":
        try:
            with Path(path).open(newline="", encoding="utf-8-sig") as file:
                rows = list(csv.DictReader(file))
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise RosterError(f"the roster {path} could not be read: {error}") from None
        if not rows or "id" not in rows[0]:
            raise RosterError(f"the roster {path} needs a header row with a column `id` (and any of canvas_user_id, "
                              "moodle_participant_id, aliases)")
        roster = cls()
        for number, row in enumerate(rows, start=2):
            learner = (row.get("id") or "").strip()
            if not learner:
                raise RosterError(f"the roster {path}, line {number}: no id")
            keys = [learner, *(alias.strip() for alias in (row.get("aliases") or "").split(";"))]
            if (row.get("name") or "").strip():
                roster.names[learner] = row["name"].strip()
            if (row.get("canvas_user_id") or "").strip():
                roster.canvas_user_ids[learner] = row["canvas_user_id"].strip()
            if (row.get("canvas_user_id") or "").strip():
                keys.append(f"canvas:{row['canvas_user_id'].strip()}")
            if (row.get("moodle_participant_id") or "").strip():
                keys.append(f"moodle:{row['moodle_participant_id'].strip()}")
            for key in filter(None, keys):
                if roster.ids.get(key, learner) != learner:
                    raise RosterError(f"the roster {path}, line {number}: {key!r} already belongs to {roster.ids[key]}")
                roster.ids[key] = learner
        return roster

    def learner(self, submission: Path) -> str | None:
        """The id of the submission's learner, or None if the roster has no one it could be."""
        key = download_key(submission)
        candidates = [key]
        canvas = CANVAS_FILE.match(submission.name) if len(submission.parts) == 1 else None
        if canvas:
            candidates.insert(0, f"canvas:{canvas['user']}")
        moodle = MOODLE_FOLDER.match(submission.parts[0]) if len(submission.parts) > 1 else None
        if moodle:
            candidates.insert(0, f"moodle:{moodle['participant']}")
        return next((self.ids[candidate] for candidate in candidates if candidate in self.ids), None)
