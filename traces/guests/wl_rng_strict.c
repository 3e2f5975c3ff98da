/* Workload: virtio-rng with a DMA map and unmap per request and an RPCIT
 * for each (strict IOTLB invalidation).  See lib/rngwl.h. */
#include "rngwl.h"

int main(void)
{
    return rng_workload("WL-RNG-STRICT", RNGWL_STRICT);
}
