"""The suite's own rules, run on a scratch test file: MNIST skips say why, and fail when the data was promised."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRATCH_TESTS = '''
import pytest


def test_uses_the_folder(mnist_dir):
    assert mnist_dir.is_dir()


@pytest.mark.mnist
def test_marked_and_skips_itself():
    pytest.skip("the files are not where this test looked")


def test_skipped_for_another_reason():
    pytest.skip("nothing to do with MNIST")
'''


@pytest.fixture
def scratch(pytester):
    pytester.makepyprojecttoml((ROOT / "pyproject.toml").read_text())
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    return pytester.makepyfile(test_scratch=SCRATCH_TESTS)


def test_without_data_tests_needing_mnist_are_skipped_with_the_reason(pytester, scratch, monkeypatch):
    monkeypatch.delenv("DIGITPAD_DATA_DIR", raising=False)
    result = pytester.runpytest_subprocess(str(scratch))
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(["SKIPPED*real MNIST not available: set DIGITPAD_DATA_DIR*",
                                 "SKIPPED*the files are not where this test looked*",
                                 "SKIPPED*nothing to do with MNIST*"])


def test_with_data_promised_a_skipped_mnist_test_fails(pytester, scratch, monkeypatch, tmp_path):
    monkeypatch.setenv("DIGITPAD_DATA_DIR", str(tmp_path / "nowhere"))
    result = pytester.runpytest_subprocess(str(scratch))
    # the fixture's skip happens in set-up (an error), the test's own skip in the call (a failure)
    result.assert_outcomes(errors=1, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*needs MNIST but was skipped although DIGITPAD_DATA_DIR=*nowhere is set*"])
    assert result.ret != 0


def test_with_the_data_there_mnist_tests_run(pytester, scratch, monkeypatch, tmp_path):
    monkeypatch.setenv("DIGITPAD_DATA_DIR", str(tmp_path))
    result = pytester.runpytest_subprocess(str(scratch), "-k", "uses_the_folder")
    result.assert_outcomes(passed=1)
