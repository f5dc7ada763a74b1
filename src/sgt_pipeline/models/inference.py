"""Inference half of ``JanusAdapter``: greedy answers, option scoring, CFG image generation, features.

Kept apart from adapter.py (batches and losses) only for size; ``JanusAdapter`` inherits it. It relies on
the adapter's ``model``, ``prompts``, ``tokenizer``, ``device``, ``embed``, ``understanding_batch`` and
``supervised_logits``. Classifier-free guidance: the unconditional prompt is the conditional one with every
token except bos and the final begin-of-image replaced by pad (still attended) — for ``generate_target`` this
removes the instruction AND the input image (no vision features enter the unconditional rows).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from .features import Features, locate_features
from .prompts import as_image_list, left_pad, position_ids, right_pad
from .sampling import greedy_text, run_with_cache, sample_image_tokens
from .vq import vq_pixels_to_images


class JanusInference:
    """Mixin: inference methods of ``JanusAdapter`` (all under no_grad and eval mode, mode restored after)."""

    @contextmanager
    def _inference(self):
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.model.train(was_training)

    def _question_inputs(self, images, questions):
        prompt_ids, pixel_values = self.prompts.encode([self.prompts.question_prompt(q) for q in questions], images)
        input_ids, attention_mask = left_pad(prompt_ids, self.prompts.pad_id)
        return prompt_ids, input_ids.to(self.device), attention_mask.to(self.device), pixel_values.to(self.device)

    def answer(self, images, questions: list[str], max_new_tokens: int = 8) -> list[str]:
        """Greedy answers."""
        with self._inference():
            _, input_ids, attention_mask, pixel_values = self._question_inputs(images, questions)
            embeds = self.embed(input_ids, pixel_values)
            tokens = greedy_text(self.model, embeds, attention_mask, self.prompts.eos_id, max_new_tokens)
        return [self.tokenizer.decode(row, skip_special_tokens=True).strip() for row in tokens.tolist()]

    def option_scores(self, images, questions: list[str], options: list[list[str]]) -> list[list[float]]:
        """Summed log-likelihood of each option as the answer (its tokens and the closing eos).

        The prompt (image + question) runs once per question; every option continues from the prompt's cached
        keys and values, so an eight-option question costs one prompt forward and eight short continuations.
        """
        owners = torch.tensor([i for i, opts in enumerate(options) for _ in opts], device=self.device)
        answers = [self.prompts.answer_ids(questions[i], option)
                   for i, opts in enumerate(options) for option in opts]
        with self._inference():
            _, input_ids, mask, pixel_values = self._question_inputs(as_image_list(images), questions)
            language_model = self.model.model.language_model
            prompt, kv_cache = run_with_cache(language_model, inputs_embeds=self.embed(input_ids, pixel_values),
                                              attention_mask=mask, position_ids=position_ids(mask))
            first = F.log_softmax(self.model.lm_head(prompt.last_hidden_state[:, -1]).float(), dim=-1)
            sums = first[owners, torch.tensor([ids[0] for ids in answers], device=self.device)]
            # Each later answer token is predicted from the prompt and the answer tokens before it.
            inputs, _ = right_pad([ids[:-1] for ids in answers], self.prompts.pad_id)
            targets, continued = right_pad([ids[1:] for ids in answers], self.prompts.pad_id)
            inputs, targets, continued = (t.to(self.device) for t in (inputs, targets, continued))
            if inputs.shape[1]:
                kv_cache.batch_select_indices(owners)
                full_mask = torch.cat([mask[owners], continued], dim=1)
                continuation, _ = run_with_cache(
                    language_model, kv_cache, inputs_embeds=self.embed(inputs), attention_mask=full_mask,
                    position_ids=position_ids(full_mask)[:, -inputs.shape[1]:])
                hidden = continuation.last_hidden_state
                logp = F.log_softmax(self.model.lm_head(hidden).float(), dim=-1)
                sums += (logp.gather(-1, targets[..., None])[..., 0] * continued).sum(1)
        sums, out, k = sums.tolist(), [], 0
        for opts in options:
            out.append(sums[k:k + len(opts)])
            k += len(opts)
        return out

    def _sample(self, prompts, images, cfg_scale, temperature, top_k, seed) -> torch.LongTensor:
        prompt_ids, pixel_values = self.prompts.encode(prompts, images, image_mode=True)
        input_ids, attention_mask = left_pad(prompt_ids, self.prompts.pad_id)
        uncond_ids = self.prompts.unconditional(input_ids, attention_mask, torch.ones(len(prompts), dtype=torch.bool))
        input_ids, uncond_ids, attention_mask = (t.to(self.device) for t in (input_ids, uncond_ids, attention_mask))
        with self._inference():
            cond = self.embed(input_ids, None if pixel_values is None else pixel_values.to(self.device))
            uncond = self.embed(uncond_ids)  # no image placeholders left: text and image both dropped
            generator = torch.Generator().manual_seed(int(seed))
            return sample_image_tokens(self.model, cond, uncond, attention_mask, self.num_image_tokens,
                                       cfg_scale, temperature, top_k, generator).cpu()

    def generate_image_tokens(self, prompts, cfg_scale=5.0, temperature=1.0, top_k=None, seed=0) -> torch.LongTensor:
        return self._sample([self.prompts.image_prompt(p) for p in prompts], None, cfg_scale, temperature, top_k, seed)

    def generate_target_tokens(self, images, instructions, cfg_scale=5.0, temperature=1.0, top_k=None,
                               seed=0) -> torch.LongTensor:
        prompts = [self.prompts.image_prompt(text, with_image=True) for text in instructions]
        return self._sample(prompts, images, cfg_scale, temperature, top_k, seed)

    def decode_image_tokens(self, tokens) -> np.ndarray:
        """VQ tokens (B, N) -> uint8 images (B, H, W, 3)."""
        with self._inference():
            pixels = self.model.decode_image_tokens(torch.as_tensor(tokens, device=self.device))
        return vq_pixels_to_images(pixels, channels_last=True).cpu().numpy()

    def generate_image(self, prompts, cfg_scale=5.0, temperature=1.0, top_k=None, seed=0) -> np.ndarray:
        """Text-to-image with classifier-free guidance; uint8 (B, H, W, 3); deterministic for a seed."""
        return self.decode_image_tokens(self.generate_image_tokens(prompts, cfg_scale, temperature, top_k, seed))

    def generate_target(self, images, instructions, cfg_scale=5.0, temperature=1.0, top_k=None,
                        seed=0) -> np.ndarray:
        """Image + instruction -> generated target image (the proxy task); uint8 (B, H, W, 3)."""
        tokens = self.generate_target_tokens(images, instructions, cfg_scale, temperature, top_k, seed)
        return self.decode_image_tokens(tokens)

    def features(self, images, questions: list[str], output_attentions: bool = True) -> Features:
        """Per-layer hidden states / attentions of the language model on the question prompts."""
        with self._inference():
            prompt_ids, input_ids, attention_mask, pixel_values = self._question_inputs(images, questions)
            embeds = self.embed(input_ids, pixel_values)
            return locate_features(self, prompt_ids, input_ids, attention_mask, embeds, questions, output_attentions)
