"""The `stems` operation of an ensemble pseudo-model: its lossless stems, each made from the
same stem of its members (common/ensembles.py) and written as the separation worker writes
stems (24-bit FLAC, stored divided by LOSSLESS_HEADROOM: the members' stems are, and every
algorithm here is linear in its inputs or picks among them, so the scale carries through).

The render worker fetches each member's stems as `<member>/<stem>` before this runs.
"""

from __future__ import annotations

import shutil
from collections.abc import Generator, Iterator
from contextlib import ExitStack

import numpy as np
import soundfile

from common import flac, tracks
from common.ensemble_jobs import member_failure
from common.ensembles import from_params
from common.jobs import JobStatus, JobStore
from worker.render.encode import BLOCK
from worker.render.ensemble_dsp import average, spec_blocks
from worker.render.operations import OperationInput, Output, output_path
from worker.runtime.errors import EncodeFailed, JobFailed

FULL_SCALE = 1 - 2 ** -23  # the largest 24-bit sample


class MemberFailed(JobFailed):
    """A member of the ensemble has no stems of the song: it failed, was cancelled or deleted."""
    reason = "member_failed"


def check_members(jobs: JobStore, song: str, params: dict) -> None:
    """Raise MemberFailed unless every member's separation of the song has stored its stems,
    naming a member that failed before one that is not finished."""
    spec, _ = from_params(params)
    separations = {member: jobs.separation(song, member) for member in spec.members}
    for member, job in separations.items():
        if why := member_failure(member, job):
            raise MemberFailed(why)
    for member, job in separations.items():
        if job is not None and not (job.status is JobStatus.DONE or job.awaiting):
            raise MemberFailed(f"{member}'s separation is {job.status.value}")


def member_inputs(params: dict) -> list[tuple[str, str]]:
    """(member, stem) of every stored stem the ensemble reads."""
    spec, stems = from_params(params)
    return [(member, stem) for stem in stems for member in spec.sources(stem)]


class _Reader:
    """A FLAC read `[channels, n]` at a time, zeros past its end."""

    def __init__(self, sound: soundfile.SoundFile):
        self.sound = sound

    def read(self, n: int) -> np.ndarray:
        block = self.sound.read(n, dtype="float64", always_2d=True).T
        if block.shape[1] < n:
            block = np.pad(block, ((0, 0), (0, n - block.shape[1])))
        return block


def _averaged(readers: list[_Reader], length: int, block: int) -> Iterator[np.ndarray]:
    for start in range(0, length, block):
        yield average([reader.read(min(block, length - start)) for reader in readers])


def combine(paths: list[str], algorithm: str, target: str, block: int = BLOCK) -> None:
    """Write the `algorithm` ensemble of the FLACs `paths` to the FLAC `target`."""
    with ExitStack() as files:
        sounds = [files.enter_context(soundfile.SoundFile(path)) for path in paths]
        rates = {(s.samplerate, s.channels) for s in sounds}
        if len(rates) != 1:
            raise EncodeFailed(f"the members' stems differ in rate or channels: {sorted(rates)}")
        rate, channels = rates.pop()
        length = max(s.frames for s in sounds)
        readers = [_Reader(s) for s in sounds]
        made = (_averaged(readers, length, block) if algorithm == "avg" else
                spec_blocks(readers, length, algorithm == "max_spec", block))
        with flac.writer(target, rate, channels) as out:
            for wav in made:
                out.write(np.clip(wav, -1.0, FULL_SCALE).T)


def ensemble_stems(job: OperationInput) -> Generator[Output, None, None]:
    """Each stem of the ensemble, in order: one member's copied, or several combined."""
    spec, stems = from_params(job.params)
    for done, stem in enumerate(stems, 1):
        name = tracks.lossless_track(stem)
        sources = [job.stems[f"{member}/{stem}"] for member in spec.sources(stem)]
        target = output_path(job, name)
        if len(sources) == 1:
            shutil.copyfile(sources[0], target)  # a pick: the member's own bytes
        else:
            combine(sources, spec.algorithm, target)
        yield name, target, "audio/flac"
        job.progress(done / len(stems))
