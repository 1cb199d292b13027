"""The versioned artifact store: atomic versions, the CURRENT pointer, status, pruning."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from tscore.artifacts import ArtifactStore
from tscore.errors import ModelNotFound


def writer(content: str = "weights"):
    def write(directory):
        (directory / "model.pt").write_text(content)
        (directory / "meta.json").write_text(json.dumps({"content": content}))

    return write


def test_write_version_creates_a_complete_named_version(tmp_path):
    store = ArtifactStore(tmp_path)
    version = store.write_version(7, writer("one"))
    assert re.fullmatch(r"p7-v0001-\d{8}T\d{6}Z", version)
    assert (tmp_path / "project-7" / version / "model.pt").read_text() == "one"
    assert store.read_meta(7, version) == {"content": "one"}
    assert store.versions(7) == [version]
    assert store.projects() == [7]
    # Nothing temporary is left next to the version.
    assert [p.name for p in (tmp_path / "project-7").iterdir()] == [version]


def test_a_failing_writer_leaves_no_half_version(tmp_path):
    store = ArtifactStore(tmp_path)
    first = store.write_version(7, writer())

    def broken(directory):
        (directory / "model.pt").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        store.write_version(7, broken)
    assert store.versions(7) == [first]
    assert [p.name for p in (tmp_path / "project-7").iterdir()] == [first]
    # The next version number is not burnt by the failure.
    assert store.next_version(7).startswith("p7-v0002-")


def test_version_names_sort_and_name_the_project(tmp_path):
    store = ArtifactStore(tmp_path)
    stamp = datetime(2026, 11, 24, 21, 5, 1, tzinfo=UTC)
    assert store.next_version(47, stamp) == "p47-v0001-20261124T210501Z"
    names = [store.write_version(47, writer(str(i))) for i in range(3)]
    assert names == sorted(names)
    assert [n.split("-")[1] for n in names] == ["v0001", "v0002", "v0003"]
    assert all(n.startswith("p47-") for n in names)
    # Beyond v9999 the numeric order still holds although the string order would not.
    big = store.write_version(47, writer(), version="p47-v10000-20260101T000000Z")
    assert store.versions(47)[-1] == big
    assert store.next_version(47, stamp) == "p47-v10001-20261124T210501Z"


def test_publish_and_current(tmp_path):
    store = ArtifactStore(tmp_path)
    assert store.current(7) is None
    one = store.write_version(7, writer())
    two = store.write_version(7, writer())
    assert store.current(7) is None  # writing does not publish
    store.publish(7, one)
    assert store.current(7) == one
    store.publish(7, two)
    assert store.current(7) == two
    assert json.loads((tmp_path / "project-7" / "CURRENT").read_text()) == {"version": two}
    with pytest.raises(ModelNotFound):
        store.publish(7, "p7-v0009-20260101T000000Z")
    assert store.current(7) == two


def test_current_ignores_a_dangling_or_corrupt_pointer(tmp_path):
    store = ArtifactStore(tmp_path)
    (tmp_path / "project-3").mkdir()
    (tmp_path / "project-3" / "CURRENT").write_text('{"version": "p3-v0001-20260101T000000Z"}')
    assert store.current(3) is None
    (tmp_path / "project-3" / "CURRENT").write_text("{not json")
    assert store.current(3) is None


def test_version_names_cannot_escape_the_project(tmp_path):
    store = ArtifactStore(tmp_path)
    for bad in ("../project-8/p8-v0001-20260101T000000Z", "..", "p7-v0001", "/etc"):
        with pytest.raises(ModelNotFound):
            store.version_dir(7, bad)
    with pytest.raises(ModelNotFound):
        store.read_meta(7, "p7-v0001-20260101T000000Z")


def test_prune_keeps_the_newest_and_always_the_current(tmp_path):
    store = ArtifactStore(tmp_path)
    names = [store.write_version(7, writer(str(i))) for i in range(5)]
    store.publish(7, names[0])
    (tmp_path / "project-7" / ".incoming-leftover").mkdir()
    deleted = store.prune(7, keep=2)
    assert deleted == names[1:3]
    assert store.versions(7) == [names[0], *names[3:]]
    assert store.current(7) == names[0]
    assert not (tmp_path / "project-7" / ".incoming-leftover").exists()


def test_projects_are_only_project_directories(tmp_path):
    store = ArtifactStore(tmp_path / "missing")
    assert store.projects() == []
    assert store.versions(1) == []
    store = ArtifactStore(tmp_path)
    for name in ("project-2", "project-10", "project-x", "other"):
        (tmp_path / name).mkdir()
    (tmp_path / "project-5").write_text("a file")
    assert store.projects() == [2, 10]


def test_status_round_trip(tmp_path):
    store = ArtifactStore(tmp_path)
    assert store.read_status(7) == {}
    store.write_status(7, {"status": "candidate", "reason": "worse"})
    assert store.read_status(7) == {"status": "candidate", "reason": "worse"}
    store.write_status(7, {"status": "published"})
    assert store.read_status(7) == {"status": "published"}
    assert sorted(p.name for p in (tmp_path / "project-7").iterdir()) == ["STATUS.json"]
