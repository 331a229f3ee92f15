# Fine-tune ViT-T on 1000 labelled Fashion-MNIST images at 96 px, from a hiermae export or checkpoint:
#   python tools/train.py configs/finetune/finetune_vit_tiny_96px_fashionmnist-1k.py --amp \
#       --cfg-options model.checkpoint=vit_tiny_timm.pth
# Without model.checkpoint it trains from random initialisation (then without layer-wise lr decay).
# One command for any export and data: tools/finetune.py.
_base_ = [
    "_base_/finetune_runtime.py",
    "_base_/fashion_mnist_1k_96px.py",
    "_base_/adamw_layer_decay_30e.py",
]

model = dict(backbone="vit_tiny_patch16_224", checkpoint=None)
optim_wrapper = dict(optimizer=dict(lr=2.5e-3))  # ViT's head lr per 256 images (MaskedViT.finetune_base_lr)
