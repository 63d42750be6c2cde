// Driver for tests/test_sanitizers.py: the kernel assembly (vectorised and scalar pair solvers,
// tiles, mirroring, cross kernels) compiled with AddressSanitizer and UBSan, on data from the
// test. Usage: sanitize_kernels ACT X.bin n Y.bin n2 p OUT.bin
//   ACT: tanh | relu | erf; X, Y: row-major float64; OUT: G(X, X), K(X, X), G(X, Y), K(X, Y).
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "deqfast/kernels.hpp"

using namespace deqfast;

static RowMatrix read(const char* path, Eigen::Index n, Eigen::Index p) {
  RowMatrix X(n, p);
  FILE* fh = std::fopen(path, "rb");
  if (!fh || std::fread(X.data(), sizeof(double), std::size_t(n * p), fh) != std::size_t(n * p)) std::exit(3);
  std::fclose(fh);
  return X;
}

int main(int argc, char** argv) {
  if (argc != 8) return 2;
  const std::string act = argv[1];
  const Eigen::Index n = std::atol(argv[3]), n2 = std::atol(argv[5]), p = std::atol(argv[6]);
  const RowMatrix X = read(argv[2], n, p), Y = read(argv[4], n2, p);
  Activation phi;
  if (act == "tanh") {
    phi.kind = Kind::Tanh;
  } else if (act == "erf") {
    phi.kind = Kind::Erf;
  } else {
    phi.kind = Kind::PiecewiseLinear;  // relu: slope 1 above 0, 0 below
    phi.p0 = 1.0;
    phi.p1 = 0.0;
  }
  KernelOptions o;  // sigma_a2 = 0.2, sigma_b2 = 0.8, tol = 1e-12
  o.block = 16;     // many tiles: diagonal tiles, ragged edges, short lane groups
  const SampleData A = solve_diagonal(phi, X.rowwise().squaredNorm(), o);
  const SampleData B = solve_diagonal(phi, Y.rowwise().squaredNorm(), o);
  std::vector<double> G(n * n), K(n * n), Gc(n * n2), Kc(n * n2);
  Outputs sym, cross;
  sym.rows = n;
  sym.ld = n;
  sym.G = G.data();
  sym.K = K.data();
  cross.rows = n;
  cross.ld = n2;
  cross.G = Gc.data();
  cross.K = Kc.data();
  assemble(phi, X, X, A, A, true, 0, n, 0, n, sym, o);
  assemble(phi, X, Y, A, B, false, 0, n, 0, n2, cross, o);
  FILE* fh = std::fopen(argv[7], "wb");
  if (!fh) return 3;
  for (const auto* v : {&G, &K, &Gc, &Kc}) std::fwrite(v->data(), sizeof(double), v->size(), fh);
  std::fclose(fh);
  return 0;
}
