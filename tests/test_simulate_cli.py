"""`inventree-edge simulate`: per-language help and faults, and `--save DIR` (one PNG per label)."""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageChops

import drivers
from agent.cli import EXIT_USAGE, main
from drivers.escpos import FAMILY as ESCPOS
from drivers.family import builtin_families
from drivers.sim import make_simulator, run_simulator
from drivers.sim.faults import COMMON_FAULTS
from drivers.zpl import FAMILY as ZPL
from drivers.zpl.protocol import encode_page
from drivers.zpl.simulator import ZplSimulator
from tests.driver_fakes import random_page
from tests.waiting import wait_until


def help_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def listed_faults(text: str) -> set[str]:
    listing = text.split("(--fault):", 1)[1]
    return {line.split()[0] for line in listing.splitlines() if line.strip()}


def test_each_language_help_lists_only_its_own_faults(capsys: pytest.CaptureFixture[str]) -> None:
    escpos = listed_faults(help_of(capsys, "simulate", "escpos"))
    zpl = listed_faults(help_of(capsys, "simulate", "zpl"))
    assert escpos == set(ESCPOS.faults) | set(COMMON_FAULTS)
    assert zpl == set(ZPL.faults) | set(COMMON_FAULTS)
    assert "cover-open" in escpos - zpl
    assert "head-open" in zpl - escpos
    overview = help_of(capsys, "simulate")
    assert "escpos" in overview
    assert "zpl" in overview
    assert "cover-open" not in overview
    assert "head-open" not in overview


def test_a_fault_of_the_other_language_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["simulate", "escpos", "--fault", "head-open"])
    assert exited.value.code == EXIT_USAGE
    assert "invalid choice: 'head-open'" in capsys.readouterr().err


async def test_save_writes_one_png_per_label_as_printed(tmp_path: Path) -> None:
    out = io.StringIO()
    saved = tmp_path / "labels"
    saved.mkdir()
    (saved / "label-0007.png").write_bytes(b"an earlier run's label")
    task = asyncio.create_task(run_simulator("zpl", port=0, out=out, save=saved))
    pages = [random_page(96, 40, seed) for seed in (1, 2)]
    try:
        listening = r"tcp://127\.0\.0\.1:(\d+)"
        await wait_until(lambda: re.search(listening, out.getvalue()) is not None, 10)
        found = re.search(listening, out.getvalue())
        assert found is not None
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", int(found[1]))
            writer.write(encode_page(pages[0], copies=2) + encode_page(pages[1]))
            await writer.drain()
            await wait_until(lambda: out.getvalue().count("->") >= 3, 10)
            writer.close()
            await writer.wait_closed()
            del reader
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # Numbering goes on after the files already there; nothing is written over.
    names = sorted(p.name for p in saved.iterdir())
    assert names == ["label-0007.png", "label-0008.png", "label-0009.png", "label-0010.png"]
    assert (saved / "label-0007.png").read_bytes() == b"an earlier run's label"
    for name, page in zip(names[1:], [pages[0], pages[0], pages[1]], strict=True):
        assert f"{saved / name}" in out.getvalue()
        with Image.open(saved / name) as image:
            printed = image.convert("1")
        assert printed.size == page.size
        assert ImageChops.difference(printed, page).getbbox() is None


def test_listing_the_simulators_loads_no_simulator_and_no_pillow() -> None:
    # Every command builds the `simulate` parser: the family declarations must stay plain data.
    script = (
        "import contextlib, io, sys\n"
        "from agent.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['simulate', 'zpl', '--help'])\n"
        "print('PIL' in sys.modules, any(m.endswith('.simulator') for m in sys.modules))\n"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["False", "False"]


def test_a_declared_family_adds_its_simulator(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        drivers, "BUILTIN_FAMILIES", (*drivers.BUILTIN_FAMILIES, "tests.fake_family")
    )
    assert "second-zpl" in help_of(capsys, "simulate")
    own = listed_faults(help_of(capsys, "simulate", "second-zpl"))
    assert own == {"paused"} | set(COMMON_FAULTS)
    assert isinstance(make_simulator("second-zpl"), ZplSimulator)
    # The known ones are the built-in families, the declared one last.
    known = ", ".join(builtin_families())
    assert known.endswith(", second-zpl")
    with pytest.raises(ValueError, match=f"no simulator for 'nonesuch'; known: {known}$"):
        make_simulator("nonesuch")
