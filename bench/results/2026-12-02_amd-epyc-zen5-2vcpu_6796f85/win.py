# win.py: writes a C program timing iterations of one chain of L dependent vpdpbusd
# each (independent of one another): how many waiting vector ops the core keeps in flight.
#   /usr/bin/python3 win.py > /tmp/w.c && gcc -O2 -mavx512f -mavx512bw -mavx512vnni -o /tmp/w /tmp/w.c
# iterations of one serial dpbusd chain of length L on register zmm(i%8), 8 iterations unrolled, each starts from zero
print('#include <stdio.h>\n#include <time.h>\nstatic double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}\nstatic char buf[4096] __attribute__((aligned(64)));\nint main(void){ long N=2000000; double cyc; { double t=now(); for(long i=0;i<N*10;i++){ __asm__ volatile("add $1,%%rax\\n\\tadd $1,%%rax\\n\\tadd $1,%%rax\\n\\tadd $1,%%rax\\n\\t" ::: "rax"); } cyc=(now()-t)/N/10*1e9/4; }')
for L in [1,2,4,8,12,16,24,32]:
  for filler in [0]:
    body=""
    for it in range(8):
        r=it
        body+=f"vpxord %%zmm{r},%%zmm{r},%%zmm{r}\\n\\t"
        for j in range(L):
            body+=f"vpdpbusd %%zmm30,%%zmm31,%%zmm{r}\\n\\t"
        body+=f"vmovdqa64 %%zmm{r},{64*it}(%0)\\n\\t"
    print(f'{{ double t=now(); for(long i=0;i<N;i++){{ __asm__ volatile("{body}" :: "r"(buf) : "xmm0","xmm1","xmm2","xmm3","xmm4","xmm5","xmm6","xmm7","memory"); }} t=(now()-t)/N*1e9/cyc/8; printf("L=%2d: %.2f cyc per iteration (throughput bound %.1f, latency %d)\\n", {L}, t, {L}/2.0, 4*{L}); }}')
print('return 0;}')
