# gen.py MIX...: writes a C program timing independent-destination instruction mixes on
# AVX-512 (MIX: kind*count+kind*count..., kinds below); ports.txt has what it measured.
#   /usr/bin/python3 gen.py dpb*4 perm*2+movb2m*2 > /tmp/g.c
#   gcc -O2 -mavx512f -mavx512bw -mavx512vnni -mavx512vbmi -o /tmp/g /tmp/g.c && /tmp/g
import sys
# generate asm loops measuring throughput of instruction mixes with many independent dests
def blk(kind, i):
    d = f"%%zmm{i}"
    if kind=="dpb": return f"vpdpbusd %%zmm30,%%zmm31,{d}\\n\\t"
    if kind=="dpw": return f"vpdpwssd %%zmm30,%%zmm31,{d}\\n\\t"
    if kind=="perm": return f"vpermb %%zmm30,%%zmm31,{d}\\n\\t"
    if kind=="permk": return f"vpermb %%zmm30,%%zmm31,{d}%{{%%k1%}}\\n\\t"
    if kind=="permi2": return f"vpermi2b %%zmm30,%%zmm31,{d}\\n\\t"
    if kind=="movb2m": return f"vpmovb2m %%zmm{i%8+20},%%k{i%6+2}\\n\\t"
    if kind=="testm": return f"vptestmb %%zmm{i%8+20},%%zmm31,%%k{i%6+2}\\n\\t"
    if kind=="msub": return f"vpsubb %%zmm30,%%zmm31,{d}%{{%%k1%}}\\n\\t"
    if kind=="sll": return f"vpslld $7,%%zmm30,{d}\\n\\t"
    if kind=="add": return f"vpaddd %%zmm30,%%zmm31,{d}\\n\\t"
    if kind=="unp": return f"vpunpcklbw %%zmm30,%%zmm31,{d}\\n\\t"
    if kind=="load": return f"vmovdqu64 {64*(i%16)}(%0),{d}\\n\\t"
    if kind=="maddubs": return f"vpmaddubsw %%zmm30,%%zmm31,{d}\\n\\t"
    if kind=="pshufb": return f"vpshufb %%zmm30,%%zmm31,{d}\\n\\t"
    if kind=="muldq": return f"vpmuldq %%zmm30,%%zmm31,{d}\\n\\t"
    if kind=="tern": return f"vpternlogd $0xca,%%zmm30,%%zmm31,{d}\\n\\t"
    if kind=="dpbm": return f"vpdpbusd (%0),%%zmm31,{d}\\n\\t"
    raise Exception(kind)
mixes = [l.split("+") for l in sys.argv[1:]]
print('#include <stdio.h>\n#include <time.h>\nstatic double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}\nstatic char buf[4096] __attribute__((aligned(64)));\nint main(void){ long N=10000000; double cyc; { double t=now(); for(long i=0;i<N;i++){ __asm__ volatile("add $1,%%rax\\n\\tadd $1,%%rax\\n\\tadd $1,%%rax\\n\\tadd $1,%%rax\\n\\t" ::: "rax"); } cyc=(now()-t)/N*1e9/4; }')
print('__asm__ volatile("kxnorq %%k0,%%k0,%%k1":::);')
for m in mixes:
    # each kind: count given as kind*count
    body=""; reg=0; n=0
    parts=[]
    for p in m:
        k,c = (p.split("*")+["1"])[:2]; parts.append((k,int(c)))
    # interleave
    seq=[]
    mx=max(c for k,c in parts)
    for j in range(mx):
        for k,c in parts:
            if j<c: seq.append(k)
    # repeat sequence so that each dest reg used rarely: dests 0..19 rotate
    for rep in range(4):
        for k in seq:
            body+=blk(k, reg%20); reg+=1
    name="+".join(f"{k}*{c}" for k,c in parts)
    print(f'{{ double t=now(); for(long i=0;i<N;i++){{ __asm__ volatile("{body}" :: "r"(buf) : "xmm0","xmm1","xmm2","xmm3","xmm4","xmm5","xmm6","xmm7","xmm8","xmm9","xmm10","xmm11","xmm12","xmm13","xmm14","xmm15","xmm16","xmm17","xmm18","xmm19","memory"); }} t=(now()-t)/N*1e9/cyc/4; printf("%-40s %.2f cyc per set\\n", "{name}", t); }}')
print('return 0;}')
