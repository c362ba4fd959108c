// The flat index of this invocation in a 2-D grid of 64-invocation workgroups, `P.groups_x`
// workgroups wide (launchers lay out large launches in two dimensions). The including file
// declares `P` with a `groups_x` field.
fn invocation(wid: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * P.groups_x + wid.x) * 64u + lid.x;
}
