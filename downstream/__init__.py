"""Transfer: export, probing, fine-tuning, mmdet / mmseg backbones (each module an entry point of its own)."""
