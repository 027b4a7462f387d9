"""The grader decodes what a sandbox sends back within bounds: a hostile reply
is refused unbuilt, and only that reply's item is lost."""

import base64
import io
import pickle
import struct
import zipfile

import pytest
import torch

from course_utils.classroom import remote


def _with_pickle(data: bytes) -> str:
    """A torch.save archive whose data.pkl is `data`."""
    buffer = io.BytesIO()
    torch.save({}, buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name in source.namelist():
            archive.writestr(name, data if name.endswith("data.pkl") else source.read(name))
    return base64.b64encode(out.getvalue()).decode()


def test_plain_values_come_back_as_they_went():
    value = {"output": torch.arange(6.0).reshape(2, 3), "ids": [1, 2, 3], "pair": (1.5, "x"), (1, 2): None}
    decoded = remote.decode_value(remote.encode_value(value))
    assert torch.equal(decoded["output"], value["output"]) and decoded["ids"] == [1, 2, 3] and decoded[(1, 2)] is None


def test_a_key_nested_deeper_than_the_limit_is_refused_unbuilt():
    """{((((1,),),)...): 0}: hashing a tuple 200,000 deep recursed in C and crashed the grader."""
    bomb = _with_pickle(b"\x80\x02}K\x01" + b"\x85" * 200_000 + b"K\x00s.")
    with pytest.raises(remote.Unreadable, match="nested more than"):
        remote.decode_value(bomb)
    ok = _with_pickle(b"\x80\x02}K\x01" + b"\x85" * 10 + b"K\x00s.")
    assert len(remote.decode_value(ok)) == 1


def test_a_list_filled_in_place_counts_its_depth_once():
    """APPENDS in batches and a memo: the same list, not a deeper one."""
    value = [[i] for i in range(5000)]
    assert remote.decode_value(remote.encode_value(value)) == value


def test_one_item_shared_into_an_exponential_tree_is_refused():
    """Each level a tuple of the level below twice, through the memo: 60
    levels are 2^60 items to hash or compare, from a pickle of 300 bytes."""
    data = b"\x80\x02K\x01q\x00"
    for level in range(60):
        data += b"h" + bytes([level % 256]) + b"h" + bytes([level % 256]) + b"\x86q" + bytes([(level + 1) % 256])
    data += b"."
    with pytest.raises(remote.Unreadable, match="items"):
        remote.decode_value(_with_pickle(data))


def test_a_tensor_claiming_more_than_its_storage_is_refused():
    """One float seen as a trillion by stride 0: comparing it would allocate terabytes."""
    huge = torch.zeros(1).as_strided((1_000_000, 1_000_000), (0, 0))
    with pytest.raises(remote.Unreadable, match="claims more"):
        remote.decode_value(remote.encode_value(huge))


def test_a_reply_larger_than_its_budget_is_refused():
    with pytest.raises(remote.Unreadable, match="MB"):
        remote.decode_value(remote.encode_value(torch.zeros(1 << 19)), max_bytes=1 << 20)


def test_not_a_torch_archive_is_refused():
    with pytest.raises(Exception):
        remote.decode_value(base64.b64encode(pickle.dumps([1])).decode())


def _rezipped(value, compression) -> str:
    """`value` saved by torch.save, its files then written compressed."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as archive:
        for name in source.namelist():
            archive.writestr(name, source.read(name))
    return base64.b64encode(out.getvalue()).decode()


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2])
def test_a_compressed_archive_is_refused_before_it_is_inflated(compression):
    """A few kilobytes of compressed zeros inflated into gigabytes in the grader."""
    bomb = _rezipped(torch.zeros(1 << 20), compression)
    assert len(bomb) < 20_000
    with pytest.raises(remote.Unreadable, match="compressed"):
        remote.decode_value(bomb)


def _long1(value: int) -> bytes:
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


@pytest.mark.parametrize("key", [_long1(((1 << 61) - 1) * 3), b"G" + struct.pack(">d", 2.5)], ids=["2^61-1 times 3", "2.5"])
def test_keys_whose_hashes_a_sender_can_choose_are_refused(key):
    """Multiples of 2^61 - 1 all hash to 0: 40,000 of them as keys took the
    grader minutes, quadratic, outside every deadline."""
    with pytest.raises(remote.Unreadable, match="dict key"):
        remote.decode_value(_with_pickle(b"\x80\x02}(" + key + b"K\x00u."))
    with pytest.raises(remote.Unreadable, match="dict key"):
        remote.decode_value(_with_pickle(b"\x80\x02}(" + key + b"\x85K\x00u."))  # inside a tuple too
    assert remote.decode_value(_with_pickle(b"\x80\x02}(K\x05" + key + b"u.")) == remote.decode_value(
        _with_pickle(b"\x80\x02}(K\x05" + key + b"u."))  # as a value it is fine


def test_ordinary_keys_pass():
    value = {"word": 1, 7: "seven", (1, "a"): [1.5], b"raw": None, -3: 0.25}
    assert remote.decode_value(remote.encode_value(value)) == value
