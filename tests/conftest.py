"""Session-wide fixtures shared by all test modules.

The model hub is unreachable here: everything runs offline on the embedded models.
Heavy fixtures (the converted model, the vLLM engine, the transformers model) are created once
per session, on first use, and only by tests that ask for them.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

import pytest  # noqa: E402

#: Context length of the shared test engine (prompts in tests are short).
TEST_MAX_MODEL_LEN = 1024


@pytest.fixture(scope="session")
def embedded_model_path():
    """Folder of the embedded SmolLM2-135M-Instruct (converted once into the cache)."""
    from ttcrouter.models import embedded_generator_path

    return embedded_generator_path()


@pytest.fixture(scope="session")
def vllm_generator(embedded_model_path):
    """One VLLMGenerator for the whole session: embedded model, eager, 2 GiB KV cache.

    Starting the engine takes about a minute on 2 CPU cores; share it, never build another.
    Seeded (seed=0) but shared, so a test must not rely on the exact samples it gets.
    """
    from ttcrouter.executors.vllm_backend import VLLMGenerator

    gen = VLLMGenerator(
        model=None,  # the embedded model, already converted by embedded_model_path
        seed=0,
        enforce_eager=True,
        max_model_len=TEST_MAX_MODEL_LEN,
        kv_cache_space_gb=2,
    )
    gen.llm  # start the engine now, so the first test's timing is not skewed
    yield gen
    gen.close()


@pytest.fixture(scope="session")
def hf_generator(embedded_model_path):
    """A TransformersGenerator on the embedded model (float32 on CPU)."""
    from ttcrouter.executors.hf_backend import TransformersGenerator

    gen = TransformersGenerator(model=str(embedded_model_path), device="cpu", seed=0)
    yield gen
    gen.close()
