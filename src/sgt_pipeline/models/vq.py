"""Janus VQ tokenizer: original-style quantisation and a trainable forward (DESIGN.md §5, "two traps").

Trap 2 — the original Janus quantizer (``codebook_l2_norm=True``) L2-normalises both the latents (after
``quant_conv``) and the codebook rows before the nearest-code search, and decodes from normalised codes.
transformers' ``JanusVQVAEVectorQuantizer.forward`` skips the normalisation at encode time (but
``get_codebook_entry`` normalises at decode time), so ``vqmodel.encode(px).image_tokens`` can pick other codes
than the model was trained with. ``tokenize_images`` is the original definition.

Trap 1 — ``JanusVQVAE.forward`` decodes from token *indices*, so no gradient reaches the encoder.
``vq_forward`` is a trainable forward: encode -> quant_conv -> normalised nearest code with a straight-through
estimator -> post_quant_conv -> decoder. Its quantised latents are exactly ``get_codebook_entry`` of its
tokens, so after training ``model.decode_image_tokens(tokenize_images(vq, px))`` reproduces what it learned.

Pixel convention: the VQ works on images in [-1, 1], channels first (Janus-Pro's convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.models.janus.modeling_janus import JanusVQVAE


def _latents(vqmodel: JanusVQVAE, pixel_values: torch.Tensor) -> torch.Tensor:
    """Pre-quantisation latents (B, h, w, D): encoder -> quant_conv, channels last."""
    dtype = vqmodel.quant_conv.weight.dtype
    hidden = vqmodel.quant_conv(vqmodel.encoder(pixel_values.to(dtype)))
    return hidden.permute(0, 2, 3, 1)


def _nearest_normalised(
    latents: torch.Tensor, codebook: torch.Tensor, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, normalised latents): argmin_j ||z/|z| - e_j/|e_j|||^2, in fp32 outside autocast.

    Rows are searched ``chunk`` at a time, so a 16384-code codebook never needs a (B*576, 16384) matrix at once.
    """
    with torch.autocast(latents.device.type, enabled=False):
        z = F.normalize(latents.float(), p=2, dim=-1)
        e = F.normalize(codebook.float(), p=2, dim=-1)
        flat, e_squared = z.reshape(-1, z.shape[-1]), (e**2).sum(1)
        indices = torch.cat([
            ((rows**2).sum(1, keepdim=True) + e_squared - 2 * rows @ e.t()).argmin(dim=1)
            for rows in flat.split(chunk)
        ])
        return indices.view(latents.shape[:-1]), z


@torch.no_grad()
def tokenize_images(vqmodel: JanusVQVAE, pixel_values: torch.Tensor) -> torch.LongTensor:
    """VQ tokens (B, h*w) of images (B, 3, H, W) in [-1, 1], quantised the original Janus way.

    Runs outside any enclosing autocast (in the VQ's own dtype), so cached targets do not depend on it.
    """
    with torch.autocast(pixel_values.device.type, enabled=False):
        latents = _latents(vqmodel, pixel_values)
    indices, _ = _nearest_normalised(latents, vqmodel.quantize.embedding.weight)
    return indices.reshape(indices.shape[0], -1)


def quantize_unnormalised(vqmodel: JanusVQVAE, pixel_values: torch.Tensor) -> torch.LongTensor:
    """What transformers' ``vqmodel.encode(px).image_tokens`` picks (no normalisation), shaped (B, h*w)."""
    with torch.no_grad():
        return vqmodel.encode(pixel_values).image_tokens.view(pixel_values.shape[0], -1)


@dataclass
class VQOutput:
    """Result of the trainable VQ forward.

    reconstruction: (B, 3, H, W) decoded image, in the model's pixel range ([-1, 1]).
    tokens: (B, h*w) chosen codes (same as ``tokenize_images``).
    codebook_loss: ||sg(z) - e||^2 (mean): pulls the chosen (normalised) codes toward the latents.
    commitment_loss: ||z - sg(e)||^2 (mean), NOT multiplied by beta.
    beta: weight of the commitment term in ``loss``.
    """

    reconstruction: torch.Tensor
    tokens: torch.LongTensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor
    beta: float

    def loss(self, pixel_values: torch.Tensor, recon_weight: float = 1.0) -> torch.Tensor:
        """recon_weight * MSE(reconstruction, pixels) + codebook_loss + beta * commitment_loss."""
        recon = F.mse_loss(self.reconstruction.float(), pixel_values.float())
        return recon_weight * recon + self.codebook_loss + self.beta * self.commitment_loss


def vq_forward(vqmodel: JanusVQVAE, pixel_values: torch.Tensor, beta: float = 0.25) -> VQOutput:
    """Trainable VQ forward with a straight-through estimator over normalised codes (see module docstring).

    Gradients reach the encoder and quant_conv (through the straight-through path and the commitment term),
    the codebook (codebook term), post_quant_conv and the decoder (reconstruction). Call
    ``set_vq_trainable(vqmodel)`` first: ``JanusVQVAE.__init__`` leaves it in eval mode.
    """
    latents = _latents(vqmodel, pixel_values)
    codebook = vqmodel.quantize.embedding.weight
    indices, z = _nearest_normalised(latents, codebook)
    codes = F.normalize(codebook.float(), p=2, dim=-1)[indices]  # == get_codebook_entry(indices), channels last
    codebook_loss = F.mse_loss(codes, z.detach())
    commitment_loss = F.mse_loss(z, codes.detach())
    quantized = z + (codes - z).detach()  # straight-through: value of codes, gradient of z
    hidden = vqmodel.post_quant_conv(quantized.permute(0, 3, 1, 2).contiguous().to(latents.dtype))
    reconstruction = vqmodel.decoder(hidden)
    return VQOutput(
        reconstruction=reconstruction,
        tokens=indices.reshape(indices.shape[0], -1),
        codebook_loss=codebook_loss,
        commitment_loss=commitment_loss,
        beta=beta,
    )


def set_vq_trainable(vqmodel: JanusVQVAE, trainable: bool = True) -> JanusVQVAE:
    """Train mode + requires_grad for every VQ parameter (or eval + frozen with ``trainable=False``)."""
    vqmodel.train(trainable)
    vqmodel.requires_grad_(trainable)
    return vqmodel


def images_to_vq_pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8-valued (B, H, W, 3) tensor/array -> float (B, 3, H, W) in [-1, 1]."""
    images = torch.as_tensor(images)
    return images.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def vq_pixels_to_images(pixels: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """Decoded pixels in [-1, 1] ((B, 3, H, W), or (B, H, W, 3) with channels_last) -> uint8 (B, H, W, 3)."""
    pixels = pixels.detach().float()
    if not channels_last:
        pixels = pixels.permute(0, 2, 3, 1)
    return ((pixels + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
