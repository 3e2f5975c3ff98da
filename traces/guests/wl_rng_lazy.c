/* Workload: virtio-rng with a DMA map (+RPCIT) per request, unmaps batched
 * into one global RPCIT each time the IOVA pool wraps (lazy invalidation).
 * See lib/rngwl.h. */
#include "rngwl.h"

int main(void)
{
    return rng_workload("WL-RNG-LAZY", RNGWL_LAZY);
}
