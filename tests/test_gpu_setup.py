"""`./places setup --gpu` installs exactly the CUDA wheels the pinned TensorFlow asks for with its and-cuda extra."""

from importlib import metadata

from core.config import PROJECT_ROOT


def test_the_gpu_requirements_are_the_pinned_tensorflows_and_cuda_extra():
    wanted = sorted(requirement.split(";")[0].replace(" ", "") for requirement in metadata.requires("tensorflow")
                    if "extra == 'and-cuda'" in requirement or 'extra == "and-cuda"' in requirement)
    listed = sorted(line.strip() for line in (PROJECT_ROOT / "requirements" / "gpu.txt").read_text().splitlines()
                    if line.strip() and not line.startswith("#"))

    assert wanted and listed == wanted
