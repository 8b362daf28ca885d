// NCCL's C ABI, the part baton calls (runtime/transport/nccl_channel.cpp), as the CUDA
// emulator's stand-in libbaton_nccl_emu.so (nccl_emu.cpp) implements it: the names,
// the result and data-type numbering and the 128-byte unique id are NCCL's, so a
// program that dlopen()s libnccl.so.2 by name loads this library instead through
// BATON_NCCL_LIBRARY. Ranks are processes or threads of one host; a transfer moves
// through POSIX shared memory. Test-only: never installed or linked into baton.
#pragma once

#include <cstddef>

struct CUstream_st;
using cudaStream_t = CUstream_st*;  // as cudart and cuda_emu.hpp spell it

namespace baton::nccl_emu {

/// Bytes of the ring each ordered pair of ranks streams through: a transfer larger than
/// this moves in pieces, each as large as the ring's free space.
constexpr size_t ring_bytes = size_t{256} << 10;

/// The most ranks one communicator holds: its segment, allocated whole at init, holds a
/// ring per ordered pair (16 ranks: 64 MiB of /dev/shm).
constexpr int max_ranks = 16;

}  // namespace baton::nccl_emu

extern "C" {

enum ncclResult_t {
  ncclSuccess = 0,
  ncclUnhandledCudaError = 1,
  ncclSystemError = 2,
  ncclInternalError = 3,
  ncclInvalidArgument = 4,
  ncclInvalidUsage = 5,
  ncclRemoteError = 6,
  ncclInProgress = 7,
  ncclNumResults = 8,
};

// NCCL's numbering; the emulator moves ncclFloat32 only and refuses the others by name.
enum ncclDataType_t {
  ncclInt8 = 0,
  ncclChar = 0,
  ncclUint8 = 1,
  ncclInt32 = 2,
  ncclInt = 2,
  ncclUint32 = 3,
  ncclInt64 = 4,
  ncclUint64 = 5,
  ncclFloat16 = 6,
  ncclHalf = 6,
  ncclFloat32 = 7,
  ncclFloat = 7,
  ncclFloat64 = 8,
  ncclDouble = 8,
  ncclBfloat16 = 9,
};

#define NCCL_UNIQUE_ID_BYTES 128
struct ncclUniqueId {
  char internal[NCCL_UNIQUE_ID_BYTES];
};

typedef struct ncclComm* ncclComm_t;

#define BATON_NCCL_EMU_API __attribute__((visibility("default")))

BATON_NCCL_EMU_API ncclResult_t ncclGetUniqueId(ncclUniqueId* unique_id);
BATON_NCCL_EMU_API ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks,
                                                 ncclUniqueId comm_id, int rank);
BATON_NCCL_EMU_API ncclResult_t ncclCommDestroy(ncclComm_t comm);
BATON_NCCL_EMU_API ncclResult_t ncclCommAbort(ncclComm_t comm);
BATON_NCCL_EMU_API ncclResult_t ncclCommGetAsyncError(ncclComm_t comm,
                                                      ncclResult_t* async_error);
BATON_NCCL_EMU_API ncclResult_t ncclSend(const void* sendbuff, size_t count,
                                         ncclDataType_t datatype, int peer, ncclComm_t comm,
                                         cudaStream_t stream);
BATON_NCCL_EMU_API ncclResult_t ncclRecv(void* recvbuff, size_t count, ncclDataType_t datatype,
                                         int peer, ncclComm_t comm, cudaStream_t stream);
BATON_NCCL_EMU_API ncclResult_t ncclGroupStart();
BATON_NCCL_EMU_API ncclResult_t ncclGroupEnd();
BATON_NCCL_EMU_API const char* ncclGetErrorString(ncclResult_t result);

}  // extern "C"
