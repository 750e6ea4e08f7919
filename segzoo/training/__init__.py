"""Training: recipes, the Trainer, losses, metrics, schedules, checkpoints, DDP, evaluation, fine-tuning,
plots, publishing zoo weights.
May import: core, data, layers, encoders, decoders, storage, inference, models, convert, api.
"""
