// Exact infinite-width DEQ kernels (docs/theory.md §3).
//
//   S* = sigma_a2 F_phi(S*) + sigma_b2 X X^T,   G* = F_phi(S*),   Gdot* = F_phi'(S*)
//   K* = G* / (1 - sigma_a2 Gdot*)                       (default NTK: B not trained)
//   Theta* = G* + Gdot* o S* / (1 - sigma_a2 Gdot*)      (B trained as well)
//
// The equations decouple: each diagonal entry solves a scalar equation
// (solve_diagonal), then each pair (i, j) solves its own scalar fixed point
//   s = sigma_a2 E[phi(u) phi(v)](d_i, d_j, s) + sigma_b2 x_i.x_j
// by Newton's method, whose derivative sigma_a2 E[phi'(u) phi'(v)] is Gdot itself
// (Price's theorem), so the NTK comes for free.
//
// The pieces, by concept: diagonal.hpp (per-sample fixed points), pair_kernels.hpp (scalar
// two-point expectations and the scalar pair solve), pair_solvers.hpp (vectorised pair
// solvers), assembly.hpp (tiled assembly and the Gaussian map of explicit layers).
#pragma once

#include "deqfast/assembly.hpp"
#include "deqfast/diagonal.hpp"
#include "deqfast/pair_kernels.hpp"
#include "deqfast/pair_solvers.hpp"
