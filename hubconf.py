"""torch.hub entry points, generated from segzoo's registry: one per core named model, each named and documented
as the model's builder (``segzoo.api.hub_entrypoint``).

    model = torch.hub.load("org/segzoo", "unet_carvana", pretrained=True, scale=0.5)

Keyword arguments are those of ``segzoo.create``. Only the ``segzoo`` package is imported.
"""

dependencies = ["torch", "torchvision", "timm", "safetensors", "huggingface_hub"]


def _entrypoints():
    from segzoo.api import hub_entrypoint
    from segzoo.core.registry import CORE_SOURCE, MODELS

    # segzoo's own entries only: no plugin is imported, so a broken plugin cannot break torch.hub for core models
    return {entry.name: hub_entrypoint(entry.name) for entry in MODELS.registered() if entry.source == CORE_SOURCE}


globals().update(_entrypoints())
