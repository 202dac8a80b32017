"""Input expansion (folders, globs, manifests) and sharding of `prelabel annotate`."""
from __future__ import annotations

import hashlib
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prelabel.inputs import (
    InputError,
    InputImage,
    check_shard,
    expand_inputs,
    read_manifest,
    select_shard,
    shard_of,
)

pytestmark = pytest.mark.timeout(60)


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


@pytest.fixture
def tree(tmp_path):
    for rel in ["a.jpg", "b.PNG", "notes.txt", ".hidden.jpg", "sub/c.webp", "sub/deeper/d.jpeg",
                ".git/e.jpg", "sub/f.tiff"]:
        touch(tmp_path / rel)
    return tmp_path


def test_expand_inputs_walks_folder_recursively_when_given_a_folder(tree):
    ids = [im.image_id for im in expand_inputs([str(tree)])]
    assert ids == [str(tree / p) for p in ["a.jpg", "b.PNG", "sub/c.webp", "sub/deeper/d.jpeg"]]


def test_expand_inputs_keeps_relative_ids_when_folder_argument_is_relative(tree, monkeypatch):
    monkeypatch.chdir(tree)
    images = expand_inputs(["sub"])
    assert [im.image_id for im in images] == ["sub/c.webp", "sub/deeper/d.jpeg"]
    assert all(im.path == im.image_id for im in images)


def test_expand_inputs_matches_images_when_given_a_recursive_glob(tree):
    ids = [im.image_id for im in expand_inputs([str(tree / "**" / "*.jp*g")])]
    assert sorted(ids) == sorted([str(tree / "a.jpg"), str(tree / "sub/deeper/d.jpeg")])


def test_expand_inputs_takes_named_file_when_extension_is_not_an_image(tree):
    assert [im.image_id for im in expand_inputs([str(tree / "notes.txt")])] == [str(tree / "notes.txt")]


@pytest.mark.parametrize("arg", ["missing.jpg", "nothing/*.png"])
def test_expand_inputs_raises_when_argument_names_nothing(tmp_path, monkeypatch, arg):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError):
        expand_inputs([arg])


def test_read_manifest_opens_lines_relative_to_its_folder_when_ids_stay_as_written(tmp_path):
    touch(tmp_path / "data/images/x.jpg")
    manifest = tmp_path / "data/manifest.txt"
    manifest.write_text("# header\nimages/x.jpg\n\n  /abs/y.png  \n")
    images = read_manifest(manifest)
    assert images == [
        InputImage("images/x.jpg", str(tmp_path / "data/images/x.jpg")),
        InputImage("/abs/y.png", "/abs/y.png"),
    ]
    assert os.path.isfile(images[0].path)


def test_expand_inputs_lists_an_image_once_when_named_twice(tree):
    manifest = tree / "m.txt"
    manifest.write_text(f"{tree / 'a.jpg'}\n{tree / 'a.jpg'}\n")
    ids = [im.image_id for im in expand_inputs([str(tree / "a.jpg"), str(tree)], manifest)]
    assert ids.count(str(tree / "a.jpg")) == 1
    assert len(ids) == len(set(ids)) == 4


def test_shard_of_keeps_known_assignment_when_hash_function_is_unchanged():
    # Pinned values (SHA-256, first 8 bytes big-endian, modulo the count): a change here
    # would silently move images between the shards of a running job.
    assert shard_of("images/0000.jpg", 8) == 6
    assert shard_of("images/0001.jpg", 1000) == 460


ids_strategy = st.lists(st.text(min_size=1, max_size=30), unique=True, max_size=200)


@given(ids=ids_strategy, shard_count=st.integers(1, 16))
def test_select_shard_partitions_input_exactly_when_sharded(ids, shard_count):
    images = [InputImage(i, i) for i in ids]
    shards = [select_shard(images, k, shard_count) for k in range(shard_count)]
    seen = [im.image_id for shard in shards for im in shard]
    assert sorted(seen) == sorted(ids)  # every image in some shard ...
    assert len(seen) == len(set(seen))  # ... and in one only
    for k, shard in enumerate(shards):
        assert [im.image_id for im in shard] == [i for i in ids if shard_of(i, shard_count) == k]


@given(ids=ids_strategy, shard_count=st.integers(2, 16), data=st.data())
def test_select_shard_keeps_membership_when_inputs_are_reordered(ids, shard_count, data):
    shuffled = data.draw(st.permutations(ids))
    for k in range(shard_count):
        a = {im.image_id for im in select_shard([InputImage(i, i) for i in ids], k, shard_count)}
        b = {im.image_id for im in select_shard([InputImage(i, i) for i in shuffled], k, shard_count)}
        assert a == b


@pytest.mark.parametrize("index,count", [(0, 0), (-1, 4), (4, 4)])
def test_check_shard_raises_when_index_is_out_of_range(index, count):
    with pytest.raises(InputError):
        check_shard(index, count)


def test_non_utf8_names_keep_their_bytes_when_listed_sharded_or_read_from_a_manifest(tmp_path):
    raw = b"caf\xe9.jpg"  # Latin-1
    (tmp_path / "m.txt").write_bytes(b"ok.jpg\n" + raw + b"\n")
    (image,) = [im for im in read_manifest(tmp_path / "m.txt") if im.image_id != "ok.jpg"]
    assert os.fsencode(image.image_id) == raw and os.fsencode(image.path).endswith(raw)
    digest = hashlib.sha256(raw).digest()
    assert shard_of(image.image_id, 7) == int.from_bytes(digest[:8], "big") % 7
