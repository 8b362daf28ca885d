// The bytes of one activation message between processes: [u32 header length][the
// header, cereal's binary archive][n_tokens x n_embd floats, unless they travel on the
// device link or the header carries an error]. Its own file because it is the wire
// format, apart from the MPI progress thread that moves the bytes (mpi_transport.cpp).
#pragma once

#include <vector>

#include "runtime/system/error.hpp"
#include "runtime/transport/transport.hpp"

namespace baton {

/// One message holding `a`'s header and host floats.
wire_buffer pack_activations(const activations& a);

/// The activations in `buf`; an error when the lengths disagree with the header or the
/// header does not parse.
result<activations> unpack_activations(const wire_buffer& buf);

}  // namespace baton
