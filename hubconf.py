"""torch.hub entry points, generated from segzoo's registry: one per core named model, each named and documented
as the model's builder (``segzoo.api.hub_entrypoint``).

    model = torch.hub.load("org/segzoo", "unet_carvana", pretrained=True, scale=0.5)

Keyword arguments are those of ``segzoo.create``. Only the ``segzoo`` package is imported.
"""

dependencies = ["torch", "torchvision", "timm", "safetensors", "huggingface_hub"]


def _entrypoints():
    from segzoo.api import hub_entrypoint
    from segzoo.core.registry import CORE_SOURCE, MODELS

    return {name: hub_entrypoint(name) for name in MODELS.own_names() if MODELS.entry(name).source == CORE_SOURCE}


globals().update(_entrypoints())
