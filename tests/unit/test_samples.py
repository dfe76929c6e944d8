"""The committed sample events are exactly what the generators produce from real envelopes."""

from __future__ import annotations

import pytest

from local.samples import EVENTS_DIR, all_samples, render

SAMPLES = all_samples()


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_given_generator_when_rendered_then_committed_file_matches(name):
    # A failure here means the contract or a generator changed: run `make samples` and commit.
    assert (EVENTS_DIR / name).read_text(encoding="utf-8") == render(SAMPLES[name])


def test_given_events_folder_then_every_file_comes_from_a_generator():
    assert sorted(p.name for p in EVENTS_DIR.glob("*.json")) == sorted(SAMPLES)


def test_given_generators_when_run_twice_then_identical():
    assert all_samples() == SAMPLES
