#!/usr/bin/env bash
# Every GPU check of the cuda backend in one script, for a machine with an NVIDIA GPU but no Java or Maven
# (see ../shared/gpu/README.md). Two halves:
#   scripts/gpu-check.sh prepare   here: a jlinked JRE, the cmc jar, the test jars and PyTorch's reference into .gpu/,
#                                  and, where ptxas is, the bench stages' kernels assembled ahead of time (.gpu/cubins.tar.xz)
#   scripts/gpu-check.sh run [GROUP|STAGE ...]
#                                  there: cmc bench, PyTorch's peers, parity tests on the GPU; results in $OUT/gpu-out.tgz
#                                  (or .gpu/gpu-out.tgz); e.g. `run bench parity ablate` in a first call, `run more` in a second
#   scripts/gpu-check.sh dryrun    here, after prepare: run's cmc bench stages on the fake driver (runtime/src/test/native/fake_cuda.c),
#                                  which runs no kernels but refuses calls that break the driver API's rules, so that a
#                                  stage that would fail on the GPU fails here first; its timings mean nothing
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
prepare)
  export JAVA_HOME=${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude
  mvn -q -B -DskipTests install
  (cd runtime && mvn -q -B jar:test-jar) && (cd compiler && mvn -q -B jar:test-jar)
  rm -rf .gpu /tmp/cmc-jre && mkdir -p .gpu
  "$JAVA_HOME/bin/jlink" --add-modules java.base,java.compiler,jdk.compiler,jdk.incubator.vector,jdk.unsupported,java.desktop,java.management,java.logging,java.xml \
      --strip-debug --no-man-pages --no-header-files --output /tmp/cmc-jre
  tar -C /tmp -cJf .gpu/jre.tar.xz cmc-jre
  cp cli/target/cmc.jar .gpu/cmc.jar
  cp runtime/target/cmc-runtime-*-tests.jar .gpu/runtime-tests.jar
  cp compiler/target/cmc-compiler-*-tests.jar .gpu/compiler-tests.jar
  # JUnit's console launcher runs the test jars there; it is no dependency of the build, so fetch it here.
  mvn -q -B dependency:copy -Dartifact=org.junit.platform:junit-platform-console-standalone:1.14.1 -Dmdep.stripVersion=true -DoutputDirectory=.gpu
  mv .gpu/junit-platform-console-standalone.jar .gpu/junit.jar
  cp scripts/gpu_torch_peer.py .gpu/
  cp ../shared/gpu/*.py .gpu/ 2>/dev/null || echo "gpu-check: ../shared/gpu/*.py not found; the PyTorch side will be skipped"
  # Every module the bench stages load, assembled here by ptxas (runtime/cuda/Cubins): the dry run on the fake
  # driver loads exactly what the GPU will, and saves each module by its hash; on the GPU the runtime loads the
  # cubins instead of spending 12-16 s a program in the driver's JIT (stage by stage, about two of the run's
  # fifteen minutes). The first stage still JITs, so that the load time without them stays measured.
  ptxas=${CUDA_HOME:-/usr/local/cuda}/bin/ptxas
  if [[ -x $ptxas ]]; then
    rm -rf /tmp/cmc-ptx /tmp/cmc-cubins && mkdir -p /tmp/cmc-cubins
    CMC_CUDA_SAVE_PTX=/tmp/cmc-ptx "$0" dryrun > /tmp/cmc-ptx-dryrun.log 2>&1 || { tail -5 /tmp/cmc-ptx-dryrun.log; exit 1; }
    find /tmp/cmc-ptx -name '*.ptx' -print0 | PTXAS=$ptxas xargs -0 -P "$(nproc)" -n 1 sh -c \
      'h=$(basename "$1" .ptx); "$PTXAS" -arch="$(sed -n "s/^\.target //p" "$1" | head -n 1)" "$1" -o /tmp/cmc-cubins/"$h".cubin' sh
    tar -C /tmp -cJf .gpu/cubins.tar.xz cmc-cubins
    echo "gpu-check: $(ls /tmp/cmc-cubins | wc -l) kernels assembled ahead of time, $(du -h .gpu/cubins.tar.xz | cut -f1) packed"
  fi
  du -sh .gpu
  ;;
run)
  # scripts/gpu-check.sh run [GROUP or STAGE ...]: the groups are bench (cmc's default and best modes, then
  # PyTorch), parity (each GEMM mode against float64 on the card), ablate (the CT step at 256 without each of
  # its scheduling defaults) and more (the alternatives); all four, in that order, when none is named. Stages run by priority, each with its own time limit and log, and none starts once
  # it could overrun the deadline (GPU_CHECK_SECONDS, default 520, for a run call of 560 s: the device tool cuts a
  # command at 600 s). The device tool brings back at most 8 files, so the logs go to /tmp/gpu-out and, after
  # every stage, into one archive, $OUT/gpu-out.tgz (or .gpu/gpu-out.tgz): what finished comes back even if the
  # call is cut off. A second call on the still-warm machine can name what the first had no time for.
  set +e
  dest="${OUT:-.gpu}"; out=/tmp/gpu-out; rm -rf "$out"; mkdir -p "$out" "$dest"
  shift; wanted=("${@:-bench parity ablate more}"); wanted=(${wanted[*]})
  deadline=$((SECONDS + ${GPU_CHECK_SECONDS:-520}))
  # What the runtime times (split-K slice counts, tiles) is kept here across calls on one machine; a dry run keeps
  # its own, fresh each time, so that it times and loads everything a fresh GPU machine's first call will.
  cache=${GPU_CHECK_CACHE:-/tmp/cmc-cache}
  pack() {  # the split-K slice counts the runtime timed so far come back too
    cp -f "$cache/cuda-splits.properties" "$out/" 2> /dev/null
    tar -C /tmp -czf "$dest/gpu-out.tgz.part" gpu-out && mv "$dest/gpu-out.tgz.part" "$dest/gpu-out.tgz"
  }
  runs() {  # group, stage: whether this call asked for the stage, by its group or its name
    local w; for w in "${wanted[@]}"; do [[ $w == "$1" || $w == "$2" ]] && return 0; done; return 1
  }
  fits() {  # name, limit: whether a stage of this limit still fits before the deadline
    if (( SECONDS + $2 > deadline )); then echo "$1: skipped, $((deadline - SECONDS)) s left of the budget" | tee -a "$out/skipped.txt"; return 1; fi
  }
  [[ -d /tmp/cmc-jre ]] || tar -C /tmp -xJf .gpu/jre.tar.xz
  if [[ -f .gpu/cubins.tar.xz && -z ${GPU_CHECK_DRY:-} ]]; then   # see prepare; the fake driver loads PTX only
    [[ -d /tmp/cmc-cubins ]] || tar -C /tmp -xJf .gpu/cubins.tar.xz
    export CMC_CUDA_CUBINS=/tmp/cmc-cubins
  fi
  java=(/tmp/cmc-jre/bin/java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -XX:+UseParallelGC)
  export CMC_CACHE=$cache CMC_DEBUG=1
  # The driver's JIT cache at its largest (4 GB), so a module an earlier stage compiled (the seed step's PTX is
  # 4 MB, 12-16 s of the driver's JIT on an H200's host) loads from the cache in a later one or a later call.
  export CUDA_CACHE_MAXSIZE=4294967296
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$out/gpu.txt" 2>&1
  cat "$out/gpu.txt"; echo "gpu-check: ${wanted[*]}, from $(date -u +%T)" | tee -a "$out/stages.txt"
  # The card's clocks, load and power every 250 ms throughout (clocks.csv; stages.txt has each stage's span):
  # whether small-batch work, a graph of microsecond kernels, runs the SMs at their 1,980 MHz or lower.
  if [[ -z ${GPU_CHECK_DRY:-} ]]; then
    nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,utilization.gpu,power.draw,temperature.gpu --format=csv -lms 250 > "$out/clocks.csv" 2>&1 &
    sampler=$!; trap 'kill $sampler 2> /dev/null' EXIT
  fi
  bench() {  # group, name, limit in seconds, then cmc bench arguments; retried kernel by kernel if the CUDA graph path fails
    local group=$1 name=$2 limit=$3; shift 3
    runs "$group" "$name" && fits "$name" "$limit" || return 0
    local t0=$SECONDS
    timeout "$limit" "${java[@]}" -jar .gpu/cmc.jar bench examples/seed_default.cm --backends cuda:0 --seconds 3 --json "$out/$name.json" "$@" \
        > "$out/$name.txt" 2> "$out/$name.err" \
      || { fits "$name without graphs" "$limit" && CMC_CUDA_GRAPHS=0 timeout "$limit" "${java[@]}" -jar .gpu/cmc.jar bench examples/seed_default.cm \
        --backends cuda:0 --seconds 3 --json "$out/$name-nographs.json" "$@" > "$out/$name-nographs.txt" 2> "$out/$name-nographs.err"; } \
      || echo "$name failed"
    echo "$name: $((SECONDS - t0)) s, to $(date -u +%T)" >> "$out/stages.txt"
    grep -v "^WARNING" "$out/$name"*.txt | grep -v "^      *[0-9.]* .* k_" ; tail -n 3 "$out/$name"*.err | grep -iv "warning\|^$\|==>" | tr '\r' '\n' | grep -v '%.*\[' | tail -3
    pack
  }
  junit() {  # group, name, limit, then ConsoleLauncher selectors; each test's line printed as it ends (testfeed)
    local group=$1 name=$2 limit=$3; shift 3
    [[ -z ${GPU_CHECK_DRY:-} ]] || return 0   # no parity without kernels that run
    runs "$group" "$name" && fits "$name" "$limit" || return 0
    local t0=$SECONDS
    timeout "$limit" "${java[@]}" -Dcmc.parity.backends=cuda: "${props[@]}" -cp .gpu/junit.jar:.gpu/cmc.jar:.gpu/runtime-tests.jar:.gpu/compiler-tests.jar \
        org.junit.platform.console.ConsoleLauncher execute "$@" --details=testfeed --disable-banner --disable-ansi-colors > "$out/$name.txt" 2>&1 \
      || echo "$name: failures or timeout (see $name.txt)"
    echo "$name: $((SECONDS - t0)) s, to $(date -u +%T)" >> "$out/stages.txt"
    echo "$name: $(grep -c ':: SUCCESSFUL' "$out/$name.txt") passed, $(grep -c ':: FAILED\|:: ABORTED' "$out/$name.txt") failed or aborted"
    grep -E -A2 ":: (FAILED|ABORTED)" "$out/$name.txt" | cut -c1-300 | head -12
    pack
  }
  # Nsight Compute at 4,096 rows, where the CT step loses to its 2x target: occupancy, warp stall reasons and the
  # memory sections for the EMA target's up-projection (128x256 by default) and down-projection (split K), the
  # input gradients into a block's activation (128x256) and into its LayerNorm (split K), a weight
  # gradient (TN, wgmma), the input projection's (128x64 mma.sync) and a bias-gradient batch reduction, twice
  # each, at the formula's slice counts. In the fourth run the step's GEMMs took 33-56 us for 2.1 GFLOP each, a
  # third of the tensor cores' rate, and tf32 (a third of the products) only 25% less: never profiled in wgmma
  # tiles. The warp stall reasons come as cycles a warp spends stalled on each per issued instruction: the
  # section WarpStateStats prints only their sum in CSV. A "membar" share would say that each slice's
  # fence.proxy.async waits for the copies still in flight; "long_scoreboard" global loads, "barrier" the slices'
  # bar.sync, "wait" fixed latencies; lg_throttle/mio_throttle the copies' and shared loads' queues.
  # scripts/ncu-summary.py FILE.csv prints a line per launch and its largest stall reasons. Its L1% (shared memory
  # included) near peak would say that shared memory bounds the wgmma GEMMs: by the PTX, an 8-deep step of a 128x256
  # 3xTF32 tile moves about 80 KB through it (wgmma's reads of the activations, 48 KB; the copies; the split; the
  # weights' fragments), some 625 cycles at 128 bytes a cycle, beside 768 cycles of the tensor cores' work.
  stalls='regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio'
  ncuProfile() {  # name, then ncu's arguments: ncu with the stall metrics into NAME.csv, and where that leaves no
                  # profile (a metric this ncu lacks, say), once more without them, so that the sections still come back
    local name=$1; shift
    timeout 120 ncu --metrics "$stalls" "$@" > "$out/$name.csv" 2> "$out/$name.err" || echo "$name failed (see $name.err)"
    if ! grep -q Duration "$out/$name.csv" && fits "$name without the stall metrics" 120; then
      mv "$out/$name.err" "$out/$name-stalls.err"
      timeout 120 ncu "$@" > "$out/$name.csv" 2> "$out/$name.err" || echo "$name failed again (see $name.err)"
    fi
  }
  profile4096() {  # group, name: ncu's sections for those kernels, in the tiles the environment asks for
    runs "$1" "$2" && command -v ncu > /dev/null && [[ -z ${GPU_CHECK_DRY:-} ]] && fits "$2" 120 || return 0
    local t0=$SECONDS
    CMC_CUDA_TUNE=0 ncuProfile "$2" --clock-control none --target-processes all \
        --kernel-name regex:'target_block1_(down|up)_mm|nt_d_block1_(ln|act)|tn_d_block1_up_w|tn_d_in_w|reduce_batch_d_block1_up_b' --launch-count 14 \
        --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
        --csv --page details "${java[@]}" -jar .gpu/cmc.jar bench examples/seed_default.cm --backends cuda:0 --seconds 1 --batch 4096 --train-batch 4096
    echo "$2: $((SECONDS - t0)) s, to $(date -u +%T)" >> "$out/stages.txt"
    grep -c Duration "$out/$2.csv"; tail -n 2 "$out/$2.err"
    pack
  }
  gemm=dev.cmc.runtime.cuda.GemmKernelTest splitk=dev.cmc.runtime.cuda.SplitKGemmKernelTest
  # 1. What the issue's targets compare, first: cmc's fp32 (3xTF32 GEMMs by default, in wgmma tiles from 4,096 rows
  #    on an H100 or H200: 128x128, and 128x256 for NN GEMMs of 1,024+ columns; 128x256 throughout from 65,536)
  #    sampling up to 1,048,576 and CT step at 4,096 and 256, with
  #    per-kernel profiles (every kernel's time in the JSON). Since the fourth run (h200-run4: 1.38 ms at 4,096,
  #    0.51 at 256), split GEMMs' last blocks load and store by 16-byte accesses, the σ table's embedding splits
  #    K, Adam + EMA is one kernel a module beside the backward pass and transposes go a 32x32 tile a block: compare with
  #    scripts/profile-diff.py docs/bench/gpu/h200-run4/call3/fp32_train4096.json fp32_train4096.json step
  #    (k_matmul_nt_d_block*_ln, k_matmul_*down_mm, k_matmul_embed_mm, k_adam_ema*, k_transpose_*).
  CMC_CUDA_CUBINS= bench bench fp32_train4096 60 --batch 1048576,4096,256 --train-batch 4096 --profile   # JIT-compiled, timing the load
  bench bench fp32_train256 40 --batch 256 --train-batch 256 --profile
  # 2. PyTorch on the same card in the same run, its figures for the same comparisons, before the tf32 stages, so
  #    that no overrun of cmc's leaves the run without its peer.
  if runs bench torch && [[ -f .gpu/torch_cm_bench.py && -z ${GPU_CHECK_DRY:-} ]] && fits torch 150; then
    t0=$SECONDS
    PYTHONUNBUFFERED=1 OUT="$out" timeout 150 python3 .gpu/gpu_torch_peer.py > "$out/torch.txt" 2>&1 || echo "torch peer failed (see torch.txt)"
    echo "torch: $((SECONDS - t0)) s, to $(date -u +%T)" >> "$out/stages.txt"
    grep -v '^ \|^[{}]\|Warning\|warn' "$out/torch.txt" | tail -8
    pack
  fi
  #    The step at 4,096 and the sampler at 4,096 as their CUDA graphs run them, each kernel stamping the GPU's clock
  #    when its blocks start and end (cmc bench --trace): which kernels run together, which alone, and which end the
  #    step. Its figures are the stamped kernels', so the table's times are not the ones to quote. timeline4096.trace.json
  #    opens in ui.perfetto.dev; the summary gives the µs run alone by kernel and the last kernels to end, each with
  #    its blocks (a kernel of 64 blocks alone leaves most of 132 SMs idle), and from every block's record how much
  #    of the step each SM had a block resident: near 100% says the step is bound by the SMs' time.
  bench bench timeline4096 40 --batch 4096 --train-batch 4096 --trace "$out/timeline4096.trace.json"
  #    tf32: the default, each run of consecutive MLP blocks one wgmma kernel fed by bulk copies at large batches
  #    (17.2 ms for 1M samples in the fourth run, against PyTorch's 39.2).
  bench bench tf32 45 --set target.precision=tf32 --batch 1048576 --train-batch 4096 --profile
  #    fp32 in the 128x128 wgmma tiles that were its default until the fourth run, against fp32_train4096's: the
  #    sampler (64.2 ms against 56.5 in 128x256), and the step at 4,096, which now tiles its GEMMs by shape (the
  #    up-projections and the input gradients into their activations 128x256, the input projection's weight
  #    gradient 128x64 mma.sync): compare the two steps' profiles with scripts/profile-diff.py.
  CMC_CUDA_TILES=wgmma bench bench fp32_square 40 --batch 1048576 --train-batch 4096 --profile
  #    The same tiles as the default, each stage refilled a trip sooner and 3xTF32's remainders in a ring of two
  #    (wgmma-mixed-early: a second barrier a trip, 4 of a 128x128 tile's 5 stages in flight instead of 2 of 4):
  #    whether bytes in flight bound the GEMMs. Its parity is parity_early's. If it wins,
  #    CudaBackend.defaultTiling takes it for 3xTF32 below 65,536 rows.
  CMC_CUDA_TILES=wgmma-mixed-early bench bench fp32_early 40 --batch 4096 --train-batch 4096 --profile
  #    The same tiles as the default with split K summed across a thread block cluster (wgmma-mixed-cluster): each
  #    split tile's slices launched as one cluster, their partials summed from each other's shared memory (DSMEM)
  #    instead of through L2 by the tile's last block alone. The step's split GEMMs (down-projections, the
  #    LayerNorms' input gradients, the weight gradients) are 24 of its kernels. Its parity is parity_cluster's.
  #    If it wins, CudaBackend.defaultTiling takes it for 3xTF32 below 65,536 rows.
  CMC_CUDA_TILES=wgmma-mixed-cluster bench bench fp32_cluster 40 --batch 4096 --train-batch 4096 --profile
  #    The default tiling with each GEMM timed in its variants too (CMC_CUDA_TUNE_TILES=1: the two above and both at
  #    once), kernel by kernel at the tuning run, and captured in the fastest of each; the choices come back in
  #    cuda-splits.properties ("kernel:slices@tiling"), its log says how many differ. Its parity is both of theirs.
  #    If it beats the best whole tiling, GemmTuning.TILES may be on by default.
  CMC_CUDA_TUNE_TILES=1 bench bench fp32_tuned 60 --batch 4096 --train-batch 4096 --profile
  #    Nsight Compute on a few of the step's kernels at 4,096 rows (see step 8), after the candidates for its target:
  #    why its GEMMs run at a third of the tensor cores' rate (stall reasons, L2 and shared-memory throughput,
  #    occupancy), never measured for wgmma.
  profile4096 bench ncu4096
  #    The step at 4,096 kernel by kernel, against the fourth run's first call (the same model and step) and against
  #    this run's 128x128 tiles, into step-diff.txt and the log, so that the call's tail already says what moved.
  if runs bench step-diff && [[ -f $out/fp32_train4096.json ]]; then
    for base in docs/bench/gpu/h200-run4/call1/fp32_train4096.json "$out/fp32_square.json"; do
      [[ -f $base ]] && python3 scripts/profile-diff.py "$base" "$out/fp32_train4096.json" step --top 25 2>&1
    done > "$out/step-diff.txt"
    for variant in fp32_early fp32_cluster fp32_tuned; do
      [[ -f $out/$variant.json ]] && python3 scripts/profile-diff.py "$out/fp32_train4096.json" "$out/$variant.json" step --top 25 >> "$out/step-diff.txt" 2>&1
    done
    tail -n 4 "$out/step-diff.txt"; pack
  fi
  # 3. Parity of the default GEMMs and of wgmma's, before anything in tf32. Parity runs every kernel against
  #    float64 (ParityTest, SamplingTest) and 200 steps against the jvm's loss curve.
  props=(-Dcmc.parity.wgmma=none "-Dcmc.parity.ending=with 3xTF32 GEMMs")
  junit parity parity_fp32 150 --select-class dev.cmc.runtime.ParityTest --select-class dev.cmc.runtime.SamplingTest \
      --select-class dev.cmc.runtime.cuda.TransposeKernelTest --select-class dev.cmc.runtime.cuda.TimelineKernelTest \
      --select-method dev.cmc.runtime.train.CudaTrainingTest#eachGpuFollowsTheJvmLossCurve
  props=(-Dcmc.parity.wgmma=only "-Dcmc.parity.ending=3xTF32 tensor-core GEMMs, fp32 accuracy in 128x128 wgmma tiles;3xTF32 tensor-core GEMMs, fp32 accuracy in 128x256 wgmma tiles;in wgmma tiles by shape")
  junit parity parity_wgmma 150 --select-class dev.cmc.runtime.ParityTest \
      --select-method "$gemm#wgmmaTileGemmAgreesWithFloat64(dev.cmc.render.PtxRenderer\$Matmul,boolean,int,int,int)" \
      --select-method "$gemm#wideWgmmaTileGemmAgreesWithFloat64(dev.cmc.render.PtxRenderer\$Matmul,boolean,int,int,int)" \
      --select-method "$gemm#wgmmaForNnGemmsOnlyAgreesWithFloat64(dev.cmc.render.PtxRenderer\$Matmul,boolean,int,int,int)" \
      --select-method "$gemm#deepWgmmaTileGemmAgreesWithFloat64(dev.cmc.render.PtxRenderer\$Matmul,boolean,int,int,int)"
  #    The early-refilled tiles (fp32_early, fp32_wide_early): the seed's programs and single GEMMs of each tile, split and not.
  props=(-Dcmc.parity.wgmma=only "-Dcmc.parity.ending=refilled early")
  junit parity parity_early 100 --select-class dev.cmc.runtime.ParityTest \
      --select-method "$gemm#earlyRefilledWgmmaTileGemmAgreesWithFloat64(dev.cmc.render.PtxRenderer\$Matmul,boolean,int,int,int)" \
      --select-method "$gemm#earlyRefilledWideWgmmaTileGemmAgreesWithFloat64(dev.cmc.render.PtxRenderer\$Matmul,boolean,int,int,int)"
  #    Split K summed across clusters (fp32_cluster, fp32_early_cluster): the seed's programs, and single GEMMs
  #    split over K (NN and TN, 128x128 and 128x256 tiles) through the runtime's cluster launches.
  props=(-Dcmc.parity.wgmma=only "-Dcmc.parity.ending=summed across clusters")
  junit parity parity_cluster 100 --select-class dev.cmc.runtime.ParityTest \
      --select-method "$splitk#clusterSummedWgmmaTileGemmAgreesWithFloat64(dev.cmc.render.PtxRenderer\$Matmul,dev.cmc.render.PtxRenderer\$Tiling,boolean,int,int,int)"
  #    The wgmma MLP blocks against float64 and the card's unfused kernels, before any of them is timed in tf32.
  CMC_CUDA_TILES=wgmma-mlp junit parity parity_fused_wgmma 90 \
      --select-method "dev.cmc.runtime.MlpKernelTest#fusedSamplerAgreesWithFloat64AndWithTheUnfusedKernels(dev.cmc.render.PtxRenderer\$Matmul,int,int,int,java.lang.String)"
  CMC_CUDA_TILES=wgmma-chain junit parity parity_fused_chain 90 \
      --select-method "dev.cmc.runtime.MlpKernelTest#fusedSamplerAgreesWithFloat64AndWithTheUnfusedKernels(dev.cmc.render.PtxRenderer\$Matmul,int,int,int,java.lang.String)"
  CMC_CUDA_TILES=wgmma-chain-bulk junit parity parity_fused_chain_bulk 90 \
      --select-method "dev.cmc.runtime.MlpKernelTest#fusedSamplerAgreesWithFloat64AndWithTheUnfusedKernels(dev.cmc.render.PtxRenderer\$Matmul,int,int,int,java.lang.String)"
  # 4. What each of the step's scheduling choices gains at 256 rows (the third run: timed slices 0.71 -> 0.64 ms,
  #    priorities and programmatic launch nothing): the same step with programmatic dependent launch (each kernel
  #    of the graph launched while the one before it in its stream runs; off by default since it cost 7% at 4,096);
  #    with the formula's split-K slice counts instead of those the runtime timed at its first run at each batch
  #    size (runtime/cuda/GemmTuning; the counts it chose come back in cuda-splits.properties); with every kernel at
  #    one priority; in wgmma tiles, which the step at 256 does not take by default and has never been timed in.
  CMC_CUDA_PDL=1 bench ablate fp32_train256_pdl 30 --batch 256 --train-batch 256
  CMC_CUDA_TUNE=0 bench ablate fp32_train256_notune 30 --batch 256 --train-batch 256
  CMC_CUDA_PRIORITY=0 bench ablate fp32_train256_noprio 30 --batch 256 --train-batch 256
  CMC_CUDA_TILES=wgmma bench ablate fp32_train256_wgmma 30 --batch 256 --train-batch 256
  #    At 4,096 rows: the weight gradients (TN) in 128x64 mma.sync tiles, as before their wgmma path (0.47 ms of
  #    the step's 2.26 ms of kernels in the third run), against the default's fp32_train4096.
  CMC_CUDA_TILES=wgmma-nn bench ablate fp32_train4096_wgmma_nn 40 --batch 4096 --train-batch 4096 --profile
  # 5. tf32's alternatives: without fused blocks, and wgmma in 32-deep slices; the blocks one kernel each, by bulk
  #    copies and by cp.async, and chained by cp.async (21.8, 38.2 and 33.7 ms in the fourth run).
  CMC_CUDA_MLP=split bench more tf32_split 40 --set target.precision=tf32 --batch 1048576 --train-batch 4096 --profile
  CMC_CUDA_TILES=wgmma-deep CMC_CUDA_MLP=fused bench more wgmma_deep_fused_tf32 40 --set target.precision=tf32 --batch 1048576 --train-batch 4096 --profile
  CMC_CUDA_TILES=wgmma-mlp-bulk CMC_CUDA_MLP=fused bench more wgmma_mlp_bulk_tf32 45 --set target.precision=tf32 --batch 1048576 --train-batch 4096 --profile
  CMC_CUDA_TILES=wgmma-mlp CMC_CUDA_MLP=fused bench more wgmma_mlp_tf32 45 --set target.precision=tf32 --batch 1048576 --train-batch 4096 --profile
  CMC_CUDA_TILES=wgmma-chain CMC_CUDA_MLP=fused bench more wgmma_chain_tf32 45 --set target.precision=tf32 --batch 1048576 --train-batch 4096 --profile
  #    The 1M fp32 sampler's 128x256 tiles refilled early (wgmma-wide-early: 6 of 7 stages in flight, not 4 of 6),
  #    against fp32_train4096's 1M row; its parity is parity_early's.
  CMC_CUDA_TILES=wgmma-wide-early bench more fp32_wide_early 45 --batch 1048576 --train-batch 256 --profile
  #    The step at 256 (128x64 tiles, 35 kernels on the longest chain) as timeline4096 records the one at 4,096, and
  #    the step at 4,096 refilled early so (beside fp32_early's figures, its stages' overlap).
  bench more timeline256 30 --batch 256 --train-batch 256 --trace "$out/timeline256.trace.json"
  CMC_CUDA_TILES=wgmma-mixed-early bench more timeline4096_early 40 --batch 4096 --train-batch 4096 --trace "$out/timeline4096_early.trace.json"
  #    Both at once (wgmma-mixed-early-cluster), and the cluster-summed step's timeline: whether the split GEMMs'
  #    tails (their last blocks' ends against the rest) shrank.
  CMC_CUDA_TILES=wgmma-mixed-early-cluster bench more fp32_early_cluster 40 --batch 4096 --train-batch 4096 --profile
  CMC_CUDA_TILES=wgmma-mixed-cluster bench more timeline4096_cluster 40 --batch 4096 --train-batch 4096 --trace "$out/timeline4096_cluster.trace.json"
  #    And each GEMM in the fastest of its tiling's variants (fp32_tuned), as its graph runs them together.
  CMC_CUDA_TUNE_TILES=1 bench more timeline4096_tuned 40 --batch 4096 --train-batch 4096 --trace "$out/timeline4096_tuned.trace.json"
  #    The 128x64 mma.sync tiles (90.0 ms for 1M fp32 samples, 1.70 ms a step at 4,096, in the fourth run).
  CMC_CUDA_TILES=narrow bench more narrow 50 --batch 1048576,4096 --train-batch 4096 --profile
  # 6. The rest of parity on the GPU: tf32, Hopper's wgmma tiles, the fused MLP blocks (samplers against
  #    float64 and the card's unfused kernels, a CT step with fused target blocks against the unfused step), each
  #    GEMM tiling and split-K case alone beside the simulator, then FMA, bf16 and 128×128 tiles. Each stage is a JVM
  #    of its own (a kernel fault leaves the CUDA context unusable for every test after it) and as small as the
  #    driver's JIT allows: each test program costs seconds of it, and every mode in one stage outlasted 150 s.
  props=(-Dcmc.parity.wgmma=none "-Dcmc.parity.ending=with tf32 tensor-core GEMMs")
  junit parity parity_tf32 100 --select-class dev.cmc.runtime.ParityTest
  props=(-Dcmc.parity.wgmma=only "-Dcmc.parity.ending=tf32 tensor-core GEMMs in 128x128 wgmma tiles;32-deep slices;tf32 tensor-core GEMMs in 128x256 wgmma tiles")
  junit parity parity_wgmma_tf32 120 --select-class dev.cmc.runtime.ParityTest
  props=()
  junit parity parity_fused 90 --select-class dev.cmc.runtime.MlpKernelTest
  junit parity parity_gemm 90 \
      --select-method "$gemm#oneGemmAgreesWithFloat64(dev.cmc.render.PtxRenderer\$Matmul,boolean,int,int,int)" \
      --select-method "$gemm#wideTileGemmAgreesWithFloat64(dev.cmc.render.PtxRenderer\$Matmul,boolean,int,int,int)" \
      --select-method "$splitk#fixedRowGemmWithLongKSplitsK(dev.cmc.render.PtxRenderer\$Matmul,int,int)" \
      --select-method "$splitk#splitGemmsOfOneProgramKeepTheirOwnCounters"
  props=(-Dcmc.parity.wgmma=none "-Dcmc.parity.ending=with fp32 FMA GEMMs;with bf16 tensor-core GEMMs;in 128x128 tiles")
  junit parity parity_more 150 --select-class dev.cmc.runtime.ParityTest
  # 7. Where the CT step at 256 spends its 1.02 ms (35 launches on its longest chain, about 29 µs each): Nsight
  #    Compute's duration of each of the step's kernels that the sampler lacks (its EMA-target forward has the
  #    forward's shapes), clocks left alone. ncu replays each kernel alone, so these are the kernels' own times, no launch gaps.
  if runs more ncu256 && command -v ncu > /dev/null && [[ -z ${GPU_CHECK_DRY:-} ]] && fits ncu256 120; then
    t0=$SECONDS
    timeout 120 ncu --clock-control none --target-processes all --kernel-name regex:'target_|_d_|tn_|adam|ema' --launch-count 110 \
        --metrics gpu__time_duration.sum,sm__cycles_elapsed.avg.per_second,sm__throughput.avg.pct_of_peak_sustained_elapsed,launch__grid_size,launch__registers_per_thread,sm__warps_active.avg.pct_of_peak_sustained_active \
        --csv "${java[@]}" -jar .gpu/cmc.jar bench examples/seed_default.cm --backends cuda:0 --seconds 1 --batch 256 --train-batch 256 \
        > "$out/ncu256.csv" 2> "$out/ncu256.err" || echo "ncu256 failed (see ncu256.err)"
    echo "ncu256: $((SECONDS - t0)) s, to $(date -u +%T)" >> "$out/stages.txt"
    grep -c gpu__time_duration "$out/ncu256.csv"; tail -n 2 "$out/ncu256.err"
    pack
  fi
  # 8. ncu4096 (the default tiles) ran with the benchmarks, in step 2; here the same kernels in 128x256 wgmma
  #    tiles: whether their deeper pipeline keeps more bytes in flight, as meant.
  CMC_CUDA_TILES=wgmma-wide profile4096 more ncu4096_wide
  #    And refilled early (fp32_early): whether two slices more in flight shorten the GEMMs' waits on their copies.
  CMC_CUDA_TILES=wgmma-mixed-early profile4096 more ncu4096_early
  #    One tf32 wgmma MLP block at a million rows, and the chain of all four with both projections (one launch each,
  #    replayed per section): whether the tensor cores, shared memory, L2, the copies or the barriers bound them.
  profileMlp() {  # name, kernel regex: ncu's sections for that kernel of the tf32 sampler, in the tiles the environment asks for
    runs more "$1" && command -v ncu > /dev/null && [[ -z ${GPU_CHECK_DRY:-} ]] && fits "$1" 120 || return 0
    local t0=$SECONDS
    CMC_CUDA_MLP=fused ncuProfile "$1" --clock-control none --target-processes all --kernel-name regex:"$2" --launch-count 1 \
        --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
        --section SchedulerStats --csv --page details "${java[@]}" -jar .gpu/cmc.jar bench examples/seed_default.cm --backends cuda:0 --seconds 1 \
        --set target.precision=tf32 --batch 1048576 --train-batch 256
    echo "$1: $((SECONDS - t0)) s, to $(date -u +%T)" >> "$out/stages.txt"
    grep -c Duration "$out/$1.csv"; tail -n 2 "$out/$1.err"
    pack
  }
  CMC_CUDA_TILES=wgmma-mlp profileMlp ncu_wgmma_mlp 'mlp_block1'
  CMC_CUDA_TILES=wgmma-chain profileMlp ncu_wgmma_chain 'mlp_h_in_to_out'
  CMC_CUDA_TILES=wgmma-chain-bulk profileMlp ncu_wgmma_chain_bulk 'mlp_h_in_to_out'
  # 9. The alternatives, as time allows: each of wgmma and fused blocks alone in tf32, fused blocks in fp32,
  #    128×128 mma.sync tiles (2-stage pipeline; 3xTF32 in 8 warps of 64×32, tf32 in 4 of 64×64), the GEMMs on
  #    the FMA units, the batch-256 graph captured on one stream, bf16.
  CMC_CUDA_TILES=narrow bench more narrow_tf32 40 --set target.precision=tf32 --batch 1048576 --train-batch 4096 --profile
  CMC_CUDA_MLP=fused bench more fused_fp32 40 --batch 1048576 --train-batch 4096 --profile
  CMC_CUDA_TILES=wide bench more wide 50 --batch 1048576,4096 --train-batch 4096 --profile
  CMC_CUDA_TILES=wide bench more wide_tf32 40 --set target.precision=tf32 --batch 1048576 --train-batch 4096
  CMC_CUDA_FP32_MATMUL=fma bench more fma 50 --batch 1048576,4096 --train-batch 4096
  CMC_CUDA_STREAMS=1 bench more fp32_train256_one_stream 30 --batch 256 --train-batch 256
  CMC_CUDA_PDL=1 bench more fp32_train4096_pdl 40 --batch 4096 --train-batch 4096
  CMC_CUDA_TUNE=0 bench more fp32_train4096_notune 40 --batch 4096 --train-batch 4096
  CMC_CUDA_PRIORITY=0 bench more fp32_train4096_noprio 40 --batch 4096 --train-batch 4096
  bench more bf16 40 --set target.precision=bf16 --batch 1048576 --train-batch 4096
  cat "$out/stages.txt"
  # The issue's four targets from this call's stages, each figure counted only where its parity passed, the step at
  # 4,096 under each tiling timed, and the parity stages' outcomes (scripts/targets.py: run it here on several calls'
  # outputs together).
  python3 scripts/targets.py "$out" > "$out/targets.txt" 2>&1; cat "$out/targets.txt"; pack
  ;;
dryrun)
  [[ -f .gpu/cmc.jar ]] || { echo "gpu-check: run 'scripts/gpu-check.sh prepare' first" >&2; exit 2; }
  fake=/tmp/cmc-fake-cuda; mkdir -p $fake; rm -rf $fake/driver.log $fake/cache
  cc -std=c11 -O1 -shared -fPIC -o $fake/libcuda.so.1 runtime/src/test/native/fake_cuda.c
  CMC_CUDA_LIBRARY=$fake/libcuda.so.1 CMC_FAKE_CUDA_LOG=$fake/driver.log GPU_CHECK_DRY=1 GPU_CHECK_CACHE=$fake/cache OUT=$fake GPU_CHECK_SECONDS=${GPU_CHECK_SECONDS:-900} \
      "$0" run | tee $fake/run.txt
  if grep '^error' $fake/driver.log || grep 'failed' $fake/run.txt; then
    echo "gpu-check dryrun: FAILED, see above (driver log: $fake/driver.log, outputs: /tmp/gpu-out)"; exit 1
  fi
  echo "gpu-check dryrun: $(grep -c '^launch' $fake/driver.log) launches and $(grep -c '^graph launch' $fake/driver.log) graphs launched, none refused"
  ;;
*)
  echo "usage: scripts/gpu-check.sh prepare|run [GROUP|STAGE ...]|dryrun" >&2; exit 2 ;;
esac
