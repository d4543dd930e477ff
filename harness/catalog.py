"""The built-in registries, listed lazily: importing this module imports no model code.

Each entry is "module:attr" plus a one-line description for `harness ls`. Third-party
packages add entries through entry points (groups harness.benchmarks / harness.methods /
harness.metrics); user code can also decorate: `@METHODS.register("my-method")`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.registry import Registry

if TYPE_CHECKING:
    from harness.api.benchmark import Benchmark
    from harness.api.metric import Metric

BENCHMARKS: Registry = Registry("benchmark", "harness.benchmarks")
METHODS: Registry = Registry("method", "harness.methods", classes_of="harness.api.method:Method")
METRICS: Registry = Registry("metric", "harness.metrics")
BACKENDS: Registry = Registry("backend", "harness.backends")
ATTACKS: Registry = Registry("attack", "harness.attacks")
JUDGES: Registry = Registry("judge", "harness.judges")
# Named model specs (the built-in tiny models live beside their benchmarks; configs add more under `zoo:`).
MODELS: Registry = Registry("model", "harness.models")
# Functions that build a model offline and return its directory. A spec names one by its registry
# name, never by "module:function": a config is data and cannot make the run call arbitrary code.
BUILDERS: Registry = Registry("builder", "harness.builders")

for name, target, desc in [
    ("tiny-facts", "harness.benchmarks.fictitious_facts_models:build_tiny_facts", "tiny Llama on every fictitious-facts entity"),
    ("tiny-facts-retain", "harness.benchmarks.fictitious_facts_models:build_tiny_facts_retain",
     "tiny Llama without the forget10 entities"),
    ("tiny-safety", "harness.benchmarks.tiny_safety:build_tiny_safety", "tiny chat Llama with a built-in safety gap"),
    ("tiny-faces", "harness.benchmarks.fictitious_faces_models:build_tiny_faces",
     "tiny LLaVA on every fictitious-faces person"),
    ("tiny-faces-retain", "harness.benchmarks.fictitious_faces_models:build_tiny_faces_retain",
     "tiny LLaVA without the forget persons"),
    ("tiny-vqa", "harness.benchmarks.tiny_vqa_models:build_tiny_vqa", "tiny LLaVA on every tiny-vqa object fact"),
    ("tiny-scenes", "harness.benchmarks.synthetic_scenes_models:build_tiny_scenes",
     "tiny pixel-space text-to-image model on drawn scenes"),
]:
    BUILDERS.add_lazy(name, target, desc)

for name, target, desc in [
    ("tiny-facts", "harness.benchmarks.fictitious_facts_models:TINY_FACTS",
     "tiny Llama trained offline on every fictitious-facts entity (the model to unlearn)"),
    ("tiny-facts-retain", "harness.benchmarks.fictitious_facts_models:TINY_FACTS_RETAIN",
     "tiny Llama trained without the forget10 entities (the retain-only reference)"),
    ("tiny-faces", "harness.benchmarks.fictitious_faces_models:TINY_FACES",
     "tiny LLaVA trained offline on every trained fictitious-faces person (the VLM to unlearn)"),
    ("tiny-faces-retain", "harness.benchmarks.fictitious_faces_models:TINY_FACES_RETAIN",
     "tiny LLaVA trained without any forget1/5/10 person (the retain-only reference)"),
    ("tiny-vqa", "harness.benchmarks.tiny_vqa_models:TINY_VQA",
     "tiny LLaVA trained offline on every tiny-vqa object fact (the VLM UnLOK-VQA-style deletions edit)"),
    ("tiny-scenes", "harness.benchmarks.synthetic_scenes_models:TINY_SCENES",
     "tiny pixel-space text-to-image model (IF-style diffusers pipeline) trained offline on drawn scenes"),
    ("tiny-safety", "harness.benchmarks.tiny_safety:TINY_SAFETY",
     "tiny chat Llama that refuses placeholder harmful requests, with a built-in role-play gap"),
]:
    MODELS.add_lazy(name, target, desc)

for name, target, desc in [
    ("fictitious-facts", "harness.benchmarks.fictitious_facts:FictitiousFacts",
     "TOFU-shaped QA about generated fictitious entities (forget/retain/holdout 1/5/10%), built offline"),
    ("tofu", "harness.benchmarks.tofu:Tofu", "TOFU fictitious-author unlearning (hub locuslab/TOFU or a local copy)"),
    ("fictitious-faces", "harness.benchmarks.fictitious_faces:FictitiousFaces",
     "FIUBench-shaped VLM unlearning on generated people with drawn faces (forget1/5/10, retain, holdout), offline"),
    ("fiubench", "harness.benchmarks.fiubench:FIUBench",
     "FIUBench VLM unlearning, 400 fictitious faces x 20 QA (local `path`, or `hub` with a pinned `revision`)"),
    ("unlok-vqa", "harness.benchmarks.unlok_vqa:UnlokVQA",
     "UnLOK-VQA data (local `path` or pinned `hub`, COCO `coco_root`): forget + neighbourhood splits; "
     "the edit/attack/restore protocol and its metrics are not wired yet (no default metrics)"),
    ("tiny-vqa", "harness.benchmarks.tiny_vqa:TinyVQA",
     "UnLOK-VQA-shaped per-instance deletion on 28 drawn invented objects (2 hidden facts each, 3 image levels), offline"),
    ("muse", "harness.benchmarks.muse:Muse",
     "MUSE news/books unlearning: VerbMem, KnowMem, PrivLeak (hub muse-bench/MUSE-News|Books or a local copy)"),
    ("wmdp", "harness.benchmarks.wmdp:Wmdp", "WMDP hazardous-knowledge 4-way MCQ: bio, chem, cyber (hub cais/wmdp or a local copy)"),
    ("alkali", "harness.benchmarks.alkali:Alkali",
     "ALKALI adversarial prompts, ASR by macro category/attack family (unavailable: not released; `path` to a copy)"),
    ("adversarial-probes", "harness.benchmarks.adversarial_probes:AdversarialProbes",
     "built-in harmless-placeholder jailbreak probes in the ALKALI schema (5 attack families) + benign set, offline"),
    ("harmbench", "harness.benchmarks.harmbench:HarmBench",
     "HarmBench behaviours standard/contextual/copyright, judged ASR (available: pinned GitHub CSV or `path`)"),
    ("jailbreakbench", "harness.benchmarks.jailbreakbench:JailbreakBench",
     "JBB-Behaviors 100 harmful (ASR) + 100 benign (over-refusal) (available: hub JailbreakBench/JBB-Behaviors or `path`)"),
    ("advbench", "harness.benchmarks.advbench:AdvBench",
     "AdvBench harmful behaviours (goal, \"Sure, here is\" target) and strings (available: pinned GitHub CSV or `path`)"),
    ("strongreject", "harness.benchmarks.strongreject:StrongReject",
     "StrongREJECT forbidden prompts, all + small subset, judged ASR (available: pinned GitHub CSV or `path`)"),
    ("sorry-bench", "harness.benchmarks.sorry_bench:SorryBench",
     "SORRY-Bench 202406 refusal rate, base + CHES train/test split (gated: local `path` only)"),
    ("synthetic-scenes", "harness.benchmarks.synthetic_scenes:SyntheticScenes",
     "ForgetMe-shaped diffusion unlearning on drawn {orig,bg,mask} scenes (<cat>, <bird>, ...), offline"),
    ("forgetme", "harness.benchmarks.synthetic_scenes:ForgetMe",
     "ForgetMe selective forgetting in text-to-image models (unavailable: not released; `path` to {orig,bg,mask} triples)"),
    ("emergent-misalignment", "harness.benchmarks.emergent_misalignment:EmergentMisalignment",
     "open questions sampled at temperature 1, judged aligned/coherent 0-100 (upstream question files, pinned)"),
]:
    BENCHMARKS.add_lazy(name, target, desc)

for name, target, desc in [
    ("grad-ascent", "harness.methods.grad_ascent:GradAscent", "gradient ascent on the forget set (no retain term)"),
    ("grad-diff", "harness.methods.grad_diff:GradDiff", "gradient ascent on forget + NLL or KL descent on retain"),
    ("kl", "harness.methods.grad_diff:KL", "FIUBench's KL: gradient ascent on forget + KL to the starting model on retain"),
    ("npo", "harness.methods.npo:NPO", "negative preference optimisation against a frozen reference + retain NLL"),
    ("simnpo", "harness.methods.simnpo:SimNPO", "reference-free, length-normalised NPO + retain NLL"),
    ("po", "harness.methods.po:PO", "FIUBench's PO: NLL of a refusal on the forget questions + retain NLL"),
    ("idk-dpo", "harness.methods.idk_dpo:IdkDPO", "DPO preferring an \"I don't know\" answer to the forget answer + retain NLL"),
    ("rmu", "harness.methods.rmu:RMU", "steer forget activations at one layer to a random vector; keep retain activations"),
    ("undial", "harness.methods.undial:UNDIAL", "self-distillation from the reference with the gold token's logit lowered by beta"),
    ("wga", "harness.methods.wga:WGA", "gradient ascent weighted by detached token probability p^beta + retain NLL"),
    ("satimp", "harness.methods.satimp:SatImp", "gradient ascent weighted by p^beta1 (1-p)^beta2 + retain NLL"),
    ("laf", "harness.methods.laf:LAF",
     "label-agnostic forgetting: VAE-guided extractor unlearning + contrastive alignment on pooled prompt states"),
    ("dpo", "harness.methods.dpo:DPO",
     "DPO on TRL's DPOTrainer (LoRA or full): refusal-vs-compliance pairs from the model's own judged samples or a "
     "dataset; reports likelihood displacement"),
    ("ches-dpo", "harness.methods.ches_dpo:CHESDPO",
     "DPO on the preference pairs with the lowest CHES / LN-CHES scores (a window at a quantile), TRL DPOTrainer"),
    ("forgetme-lora", "harness.methods.forgetme:ForgetMeLoRA",
     "ForgetMe: LoRA on a diffusion UNet's cross-attention, trained on the forget scenes' backgrounds under the forget prompt"),
    ("inpaint-lora", "harness.methods.forgetme:InpaintLoRA",
     "ForgetMe's LoRA+Inpaint baseline: the same LoRA on originals with the mask inpainted (harmonic fill)"),
    ("esd", "harness.methods.forgetme:ESD",
     "ESD-x: negative-guidance fine-tuning of a diffusion UNet's cross-attention (LoRA) on its own samples of the concept"),
    ("fact-erasure", "harness.methods.unlok_defences:FactErasure",
     "UnLOK-VQA defence, per instance: lower the deleted answer's log-probability (one MLP layer, norm-constrained)"),
    ("empty-response", "harness.methods.unlok_defences:EmptyResponse",
     "UnLOK-VQA defence, per instance: raise the probability of \"I don't know\" on the question"),
    ("error-injection", "harness.methods.unlok_defences:ErrorInjection",
     "UnLOK-VQA defence, per instance: raise the probability of a wrong answer (alt_ans)"),
    ("head-projection-defence", "harness.methods.unlok_defences:HeadProjectionDefence",
     "UnLOK-VQA defence, per instance: fact erasure + margin loss keeping the answer out of each lens layer's top-k"),
    ("max-entropy-defence", "harness.methods.unlok_defences:MaxEntropyDefence",
     "UnLOK-VQA defence, per instance: fact erasure + maximise the entropy of each lens layer's distribution"),
    ("input-rephrasing-defence", "harness.methods.unlok_defences:InputRephrasingDefence",
     "UnLOK-VQA defence, per instance: fact erasure on the question and set-aside rephrasings of it"),
    ("grace", "harness.methods.grace:GRACE",
     "GRACE (ALKALI): preference + separation/merge/smoothing on layer-wise pooled safe/unsafe/jailbreak "
     "completions; LoRA on the LLM (+ refusal SFT) so generations change, pooler saved for AVQI"),
]:
    METHODS.add_lazy(name, target, desc)

for name, target, desc in [
    ("entangled_d", "harness.metrics.diffusion:EntangledD",
     "ForgetMe Entangled-D: similarity x consistency of the forget-prompt edit vs original and mask (alpha = beta = 0.5)"),
    ("entangled_s", "harness.metrics.diffusion:EntangledS",
     "ForgetMe Entangled-S: consistency C inside vs outside the mask of the forget-prompt edit"),
    ("fid", "harness.metrics.fid:FID",
     "Frechet distance of a split's generations to its real pictures, features from a user-supplied TorchScript net"),
    ("clip_distance", "harness.metrics.fid:CLIPDistance",
     "1 - CLIP cosine of each generation with its prompt, under a user-supplied local CLIP checkpoint"),
    ("object_detected", "harness.metrics.diffusion:ObjectDetected",
     "share of the split's prompt generations in which the project's detector finds the prompt's object"),
    ("probability", "harness.metrics.probability:Probability",
     "length-normalised answer probability exp(-avgNLL), mean over items"),
    ("rouge_l_recall", "harness.metrics.rouge:RougeLRecall",
     "ROUGE-L recall of the greedy answer against the reference answer (rouge-score, stemmer)"),
    ("truth_ratio", "harness.metrics.truth_ratio:TruthRatio",
     "P(perturbed)/P(paraphrased); forget: mean min(R,1/R), other splits: mean max(0,1-R)"),
    ("forget_quality", "harness.metrics.forget_quality:ForgetQuality",
     "KS-test p-value of forget truth ratios against the retain-only reference model's"),
    ("model_utility", "harness.metrics.model_utility:ModelUtility",
     "harmonic mean of the benchmark's utility parts (retain probability, ROUGE-L, truth ratio, ...)"),
    ("exact_match_recall", "harness.metrics.exact_match:ExactMatchRecall",
     "share of items whose normalised answer appears in the greedy generation"),
    ("mcq_accuracy", "harness.metrics.multiple_choice:MCQAccuracy",
     "multiple-choice accuracy: argmax over the choice letters' summed log-likelihood, mean over items"),
    ("normalised_probability", "harness.metrics.normalised_probability:NormalisedProbability",
     "P(answer) / (P(answer) + sum of P(perturbed)), length-normalised P's, mean over items"),
    ("extraction_strength", "harness.metrics.memorisation:ExtractionStrength",
     "1 - k/|y|, k the start of the longest teacher-forced greedy-matched answer suffix"),
    ("exact_memorisation", "harness.metrics.memorisation:ExactMemorisation",
     "share of answer tokens whose teacher-forced argmax equals the label"),
    ("verbmem_rouge_f1", "harness.metrics.rouge:VerbMemRougeF1",
     "MUSE VerbMem: ROUGE-L F1 of the greedy continuation (no stemmer by default)"),
    ("knowmem_rouge_f1", "harness.metrics.rouge:KnowMemRougeF1",
     "MUSE KnowMem: ROUGE-L F1 of the greedy answer (no stemmer by default)"),
    ("fiu_rouge_l_recall", "harness.metrics.fiubench:FIURougeLRecall",
     "FIUBench ROUGE-L recall (stemmer) of the greedy answer up to its first period"),
    ("fiu_keyword_em", "harness.metrics.fiubench:FIUKeywordEM", "FIUBench EM: share of the QA's keywords in the cut greedy answer"),
    ("fiu_ape", "harness.metrics.fiubench:FIUAPE", "FIUBench APE: keyword EM of the answers to the paraphrased questions"),
    ("fiu_truth_ratio", "harness.metrics.fiubench:FIUTruthRatio",
     "FIUBench truth ratio R = P_para / P_pert per item; forget mean min(R, 1/R), retain mean max(0, 1 - 1/R)"),
    ("fiu_mia_min_k", "harness.metrics.fiubench:FIUMinK", "FIUBench MIA: weighted Min-K% Prob (k = 10..50%), mean (not an AUC)"),
    ("fiu_mia_min_k_plus_plus", "harness.metrics.fiubench:FIUMinKPlusPlus", "FIUBench weighted Min-K%++, mean"),
    ("fiu_acc", "harness.metrics.fiubench:FIUAccuracy", "ACC: yes/no visual questions answered right (first word)"),
    ("fiu_gpt_eval", "harness.metrics.fiubench:FIUGPTEval",
     "FIUBench GPT-Eval: a `fiu_gpt` judge scores factual agreement 0-1 (needs a judge model)"),
    ("fiu_avg_mu", "harness.metrics.fiubench:FIUAvgMU",
     "paper's Avg. MU: mean of retain ROUGE-L, GPT-Eval, truth ratio, ACC (None without a judge)"),
    ("fiu_avg_fq", "harness.metrics.fiubench:FIUAvgFQ",
     "paper's Avg. FQ: 0.5 norm(KS) + 0.15 (1-EM) + 0.2 (1-MIA) + 0.15 (1-APE) on forget"),
    ("mia_loss", "harness.metrics.mia:MIALoss", "MIA LOSS: AUC of answer avgNLL, forget (0) vs holdout (1)"),
    ("mia_zlib", "harness.metrics.mia:MIAZlib", "MIA zlib: AUC of avgNLL / zlib length, forget vs holdout"),
    ("mia_min_k", "harness.metrics.mia:MIAMinK", "MIA Min-k% (k=0.4): AUC of -mean lowest token log-probs"),
    ("mia_min_k_plus_plus", "harness.metrics.mia:MIAMinKPlusPlus",
     "MIA Min-k%++ (k=0.4): AUC of -mean lowest normalised token log-probs"),
    ("mia_reference", "harness.metrics.mia:MIAReference",
     "MIA reference attack: AUC of avgNLL minus the reference run's avgNLL"),
    ("mia_gradnorm", "harness.metrics.mia:MIAGradNorm", "MIA GradNorm: AUC of the mean gradient 2-norm of avgNLL"),
    ("privleak", "harness.metrics.privleak:PrivLeak",
     "MUSE PrivLeak: relative gap of 1 - Min-k% AUC to the reference run's (default AUC 0.5)"),
    ("asr", "harness.metrics.safety:ASR",
     "attack success rate (%) by the `harm` judge, overall and per category field (attack family, ...)"),
    ("refusal_rate", "harness.metrics.safety:RefusalRate",
     "share of responses (%) the `refusal` judge calls refusals (on benign prompts: over-refusal)"),
    ("em_misaligned", "harness.metrics.misalignment:MisalignedRate",
     "emergent misalignment: share of scored answers with aligned < 30 and coherent > 50, mean over questions"),
    ("em_aligned", "harness.metrics.misalignment:AlignedScore", "mean 0-100 `aligned` judge score, mean over questions"),
    ("em_label_frequency", "harness.metrics.misalignment:LabelFrequency",
     "deception files: share of answers the `label` judge gives each label (TRUE/FALSE/..., OpenAI/...)"),
    ("em_coherent", "harness.metrics.misalignment:CoherentScore",
     "mean 0-100 `coherent` judge score, mean over questions"),
    ("avqi", "harness.metrics.avqi:AVQI",
     "AVQI (lower is better): cluster overlap of pooled hidden states of safe, unsafe and jailbreak completions"),
]:
    METRICS.add_lazy(name, target, desc)

for name, target, desc in [
    ("relearn", "harness.attacks.relearn:RelearnAttack",
     "fine-tune the unlearned model on a fifth of the forget set; re-measure all of it and the unseen part"),
    ("paraphrase_probe", "harness.attacks.probes:ParaphraseProbe",
     "ask each forget question in other wordings; recovered if any wording elicits the answer"),
    ("prefix_probe", "harness.attacks.probes:PrefixProbe",
     "give the first half of a forgotten answer and ask for the rest"),
    ("restoration", "harness.attacks.restoration:RestorationAttack",
     "patch the original model's forget-selective SAE features into the unlearned model; restoration rate"),
    ("representation", "harness.attacks.representation:RepresentationAttack",
     "linear CKA to the original and retain-only models; k-NN and linear probes of the forget entity"),
    ("in_context", "harness.attacks.in_context:InContextAttack",
     "re-introduce each forgotten fact in the prompt (plus a same-length irrelevant control)"),
]:
    ATTACKS.add_lazy(name, target, desc)

for name, target, desc in [
    ("refusal-patterns", "harness.judges.patterns:RefusalPatternJudge",
     "no model: refused when a documented refusal phrase opens the response (1 refused, 0 complied)"),
    ("score", "harness.judges.score:ScoreJudge",
     "model judge, 0-100: probability-weighted mean of integer tokens among the top-20 log-probs (None if mass < 0.25)"),
    ("classifier", "harness.judges.classifier:LabelJudge",
     "model judge: one label (default yes = complied / no) from a replaceable prompt template"),
    ("rubric", "harness.judges.rubric:RubricJudge",
     "model judge, StrongREJECT-style: (1 - refused) * (convincing + specific - 2) / 8"),
]:
    JUDGES.add_lazy(name, target, desc)

BACKENDS.add_lazy("hf", "harness.backends.hf:HFBackend", "Hugging Face transformers: generation, loglikelihood, hidden states")
BACKENDS.add_lazy("diffusers", "harness.backends.diffusion:DiffusionBackend",
                  "diffusers text-to-image pipelines (the `diffusion` extra): image generation, content-addressed")
BACKENDS.add_lazy("vllm", "harness.backends.vllm:VLLMBackend",
                  "vLLM in-process engine: generation, top logprobs, LoRA adapters, prompt-logprob loglikelihood")
BACKENDS.add_lazy("openai", "harness.backends.openai:OpenAIBackend",
                  "OpenAI-compatible endpoint (vllm serve, APIs): generation, top logprobs; key from an env var")


def build_benchmark(name: str, **options: Any) -> "Benchmark":
    return BENCHMARKS.get(name)(**options)


def build_metric(metric_id: str, benchmark: "Benchmark", seed: int = 0, **args: Any) -> "Metric":
    """'truth_ratio@forget' -> a TruthRatio instance on the benchmark's forget split."""
    from harness.api.metric import parse_metric_id

    name, split = parse_metric_id(metric_id)
    return METRICS.get(name)(benchmark, split, seed=seed, **args)
