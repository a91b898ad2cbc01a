import os
import subprocess
import sys


def test_describe_into_a_closed_pipe_ends_quietly_as_sigpipe_would(conf_dir):
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write now fails with EPIPE
    try:
        result = subprocess.run([sys.executable, "-m", "kcm_hook", "describe",
                                 f"--conf-dir={conf_dir}"],
                                stdout=write_end, stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write_end)

    assert result.returncode == 141
    assert result.stderr == ""


def test_subcommand_usage_names_only_that_subcommand():
    result = subprocess.run([sys.executable, "-m", "kcm_hook", "init", "--help"],
                            capture_output=True, text=True)

    assert result.returncode == 0
    assert result.stdout.startswith("usage: kcm-hook init [-h] [--conf-dir <dir>]")
