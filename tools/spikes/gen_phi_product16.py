# SPIKE (reverted right after its commit): writes phi_product16, O' = Phi(X_c) S_c at d_qk = 16, degree 2,
# every feature unrolled, R rows per invocation: python3 gen_phi_product16.py R >> shaders/poly_attention.wgsl
import sys
R=int(sys.argv[1]); d=16
feats=[('one',)]+[('lin',k) for k in range(d)]+[('pair',a,b) for a in range(d) for b in range(a,d)]
while len(feats)%4: feats.append(('zero',))
def xv(t,k): return f"x{t}_{k//4}.{'xyzw'[k%4]}"
def fexpr(t,f):
    if f[0]=='one': return f"one{t}"
    if f[0]=='lin': return f"cx * {xv(t,f[1])}"
    if f[0]=='pair': return f"{'cy' if f[1]==f[2] else 'cz'} * {xv(t,f[1])} * {xv(t,f[2])}"
    return "0.0"
L=[]
L.append(f"""
// SPIKE: phi_product specialised for d_qk = 16, degree 2, {R} rows, every feature unrolled.
@compute @workgroup_size(WORKGROUP)
fn phi_product16(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32,
                 @builtin(num_workgroups) nwg: vec3<u32>) {{
    let col_quads = params.width_in / 4u;
    let blocks_per_chunk = (params.chunk + {R}u - 1u) / {R}u;
    let id = linear_id(wid, lid, nwg);
    let jq = id % col_quads;
    let block = id / col_quads;
    let h = block / (params.n_chunks * blocks_per_chunk);
    if (h >= params.heads) {{
        return;
    }}
    let c = block / blocks_per_chunk % params.n_chunks;
    let first = c * params.chunk + block % blocks_per_chunk * {R}u;
    let end = min(first + {R}u, (c + 1u) * params.chunk);
    let coef = pair_coefficients();
    let cx = coef.x; let cy = coef.y; let cz = coef.z;
    let f_quads = params.features_pad / 4u;
    let states = (h * params.n_chunks + c) * params.width_in + 4u * jq;
""")
for t in range(R):
    L.append(f"    let real{t} = first + {t}u < min(end, params.rows);")
    L.append(f"    let row{t} = select(0u, (h * params.rows + first + {t}u) * 4u, real{t});")
    for q in range(4):
        L.append(f"    let x{t}_{q} = select(vec4<f32>(0.0), x4[row{t} + {q}u], real{t});")
    L.append(f"    let one{t} = select(0.0, 1.0, real{t});")
    L.append(f"    var acc{t} = vec4<f32>(0.0);")
for q in range(len(feats)//4):
    L.append(f"    {{ let s0 = states4[states * f_quads + {q}u]; let s1 = states4[(states + 1u) * f_quads + {q}u]; let s2 = states4[(states + 2u) * f_quads + {q}u]; let s3 = states4[(states + 3u) * f_quads + {q}u];")
    for t in range(R):
        fs=", ".join(fexpr(t,feats[4*q+e]) for e in range(4))
        L.append(f"      let p{t} = vec4<f32>({fs});")
        L.append(f"      acc{t} += vec4<f32>(dot(p{t}, s0), dot(p{t}, s1), dot(p{t}, s2), dot(p{t}, s3));")
    L.append("    }")
L.append("    let add = (params.flags & ADD_ADDEND) != 0u;")
for t in range(R):
    L.append(f"    if (first + {t}u < end) {{ let at = (h * params.rows_pad + first + {t}u) * params.width_in + 4u * jq;")
    L.append(f"      for (var j = 0u; j < 4u; j++) {{ out[at + j] = select(0.0, out[at + j], add) + acc{t}[j]; }} }}")
L.append("}")
print("\n".join(L))
