import datetime as dt
import shlex
import sys

from ttcrouter import __version__
from ttcrouter.provenance import (command_line, describe, hardware_info, now, package_version,
                                  package_versions)


def test_hardware_info_names_this_machine():
    info = hardware_info()
    assert set(info) == {"cpu", "cpu_count", "cpus_usable", "memory_gb", "gpu", "platform",
                         "python"}
    assert info["cpu_count"] >= 1 and 1 <= info["cpus_usable"] <= info["cpu_count"]
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))


def test_package_versions():
    import numpy as np

    assert package_version("numpy") == f"numpy {np.__version__}"
    assert package_version("no-such-package-xyz", "numpy") == f"numpy {np.__version__}"
    assert package_version("no-such-package-xyz") is None
    v = package_versions(["numpy", ("no-such-package-xyz", "numpy"), "no-such-package-abc"])
    assert v["ttcrouter"] == __version__ and v["numpy"] == np.__version__
    assert v["no-such-package-xyz"] == np.__version__ and v["no-such-package-abc"] is None


def test_now_is_utc_to_the_second():
    t = dt.datetime.fromisoformat(now())
    assert t.utcoffset() == dt.timedelta(0) and t.microsecond == 0


def test_command_line_and_describe():
    assert shlex.split(command_line(["prog", "a b", "--x"])) == ["prog", "a b", "--x"]

    class Scorer:
        model_name = "Qwen/PRM"
        aggregation = "last"

    class Plain:
        pass

    assert describe(Scorer()) == "Scorer(model=Qwen/PRM, aggregation=last)"
    assert describe(Plain()) == "Plain" and describe(None) is None


def test_execution_settings_from_a_collections_provenance():
    from ttcrouter.provenance import execution_settings

    prov = {
        "sampling": {"temperature": 0.7, "top_p": 1.0, "max_tokens": 80,
                     "step_max_tokens": 64, "max_steps": None, "aggregation": "last",
                     "step_delimiter": "\n", "system_prompt": None},
        "config": {"prompts": {"direct": {"system": "Answer only.", "prefix": "Answer:",
                                          "max_tokens": 12, "stop": ["\n"]}}},
        # beam search rows carried over from a table with its own step settings
        "carried_over": {"strategies": ["beam_search@n=4,w=2"],
                         "sampling": {"step_max_tokens": 32, "max_steps": None,
                                      "step_delimiter": "\n", "aggregation": "last"}},
    }
    got = execution_settings(prov)
    assert got == {"max_tokens": 80, "temperature": 0.7, "top_p": 1.0, "step_max_tokens": 32,
                   "step_delimiter": "\n", "aggregation": "last",
                   "prompts": {"direct": {"system": "Answer only.", "prefix": "Answer:",
                                          "max_tokens": 12, "stop": ["\n"]}}}
    # carried-over rows of other strategies do not set the step settings
    prov["carried_over"]["strategies"] = ["majority_vote@n=4"]
    assert execution_settings(prov)["step_max_tokens"] == 64
    assert execution_settings(None) == {} and execution_settings({}) == {}
