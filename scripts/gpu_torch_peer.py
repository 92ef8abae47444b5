"""PyTorch's figures for the comparisons of cmc's cuda backend, on the same card in the same run: the issue's
peers only (fp32 and tf32 eager sampling, torch.compile sampling, the CT step under torch.compile
mode="reduce-overhead" and eager), so the GPU minutes go to measuring rather than compiling. The model and
timing are those of ../shared/gpu/torch_cm_bench.py, imported from beside this script's copy in .gpu/."""
import json, math, os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__))))
import torch
import torch_cm_bench as b

dev = "cuda"
torch.manual_seed(0)
res = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}

def save():
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "torch_peer.json"), "w") as f: json.dump(res, f, indent=1)

def record(key, ms, what):
    res[key] = ms; save()
    print(f"{what}: {ms:.3f} ms", flush=True)

model = b.CM().to(dev).eval()
N = 1048576
z = torch.randn(N, b.D, device=dev) * b.SMAX
sig = torch.full((N,), b.SMAX, device=dev)
with torch.no_grad():
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        tag = "tf32" if tf32 else "fp32"
        record(f"sample1_eager_{tag}_B{N}_ms", b.timeit(lambda: model(z, sig)), f"1-step sampling {N} {tag} eager")
    torch.backends.cuda.matmul.allow_tf32 = False
    t0 = time.time(); cm = torch.compile(model); cm(z, sig); torch.cuda.synchronize(); res["compile_fwd_s"] = time.time() - t0
    record(f"sample1_compiled_fp32_B{N}_ms", b.timeit(lambda: cm(z, sig)), f"1-step sampling {N} fp32 torch.compile")
del z, sig

# The CT step of torch_cm_graphs.py: online forward+backward, EMA-target forward, pseudo-Huber, fused Adam, EMA.
model.train()
tgt = b.CM().to(dev); tgt.load_state_dict(model.state_dict())
opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
sched = b.karras(151)
def step(x0):
    B = x0.shape[0]
    n = torch.randint(0, 150, (B,), device=dev)
    s0, s1 = sched[n], sched[n + 1]
    noise = torch.randn_like(x0)
    with torch.no_grad():
        y_t = tgt(x0 + s0[:, None] * noise, s0)
    y = model(x0 + s1[:, None] * noise, s1)
    c = 0.00054 * math.sqrt(b.D)
    loss = (torch.sqrt(((y - y_t) ** 2).sum(1) + c * c) - c).mean()
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    with torch.no_grad():
        torch._foreach_lerp_(list(tgt.parameters()), list(model.parameters()), 1 - 0.999)
    return loss
for B in (256, 4096):
    x0 = torch.randn(B, b.D, device=dev) * b.SDATA
    record(f"train_eager_fp32_B{B}_ms", b.timeit(lambda: step(x0)), f"CT step B={B} fp32 eager")
t0 = time.time(); cs = torch.compile(step, mode="reduce-overhead")
for B in (256, 4096):
    x0 = torch.randn(B, b.D, device=dev) * b.SDATA
    for _ in range(3): cs(x0)
    torch.cuda.synchronize()
    record(f"train_reduce-overhead_fp32_B{B}_ms", b.timeit(lambda: cs(x0)), f"CT step B={B} fp32 reduce-overhead (compile+warm {time.time() - t0:.0f}s)")
print(json.dumps(res, indent=1))
