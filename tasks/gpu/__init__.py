"""mmstack gpu: GPU facts (NVML or nvidia-smi), the pure GPU planner, and human summaries.

facts.py   the data (GpuFacts, Gpu, NvLink, TopoLink, LinkLevel) and its JSON round trip
nvml.py    the one boundary to pynvml, and the NVML collector
smiparse.py  pure parsers of each nvidia-smi output (topo -m, nvlink --status, CSV, table)
smi.py     the exact command lines, facts from their outputs, gather_via_smi(c) one by one
smibatch.py  every query in one command for remote hosts: gather_via_smi_batch(c)
detect.py  source selection (auto: NVML, else nvidia-smi, else CPU-only)
overrides.py  PlanOverrides: what the user asks of the planner, and what each setting takes
plan.py    plan_gpus(facts, overrides, previous) -> GpuPlan (pure)
planfile.py  GpuPlan, the saved plan document; load_saved_plan(state_dir)
steps.py   report facts, plan, save the plan (the chain in tasks/chains.py strings them)
render.py  text summaries (facts with the NVLink matrix, plan)
"""
