/* The virtio-rng DMA-mapping workload shared by wl_rng_strict and
 * wl_rng_lazy: RNGWL_REQUESTS requests of RNGWL_CHUNK bytes, each buffer
 * mapped at a fresh IOVA (a rotating pool of RNGWL_POOL_PAGES pages, as an
 * IOVA allocator hands them out) and unmapped after its completion.
 *
 *   strict: map + RPCIT(page), request, unmap + RPCIT(page)
 *   lazy:   map + RPCIT(page), request, unmap (PTE only); when the IOVA pool
 *           wraps, one global RPCIT over the whole pool flushes every stale
 *           translation at once (Linux's lazy IOTLB flush).
 *
 * Needs a device with ACCESS_PLATFORM (iommu_platform=on); without it the
 * program still runs but maps nothing (and says so). */
#ifndef RNGWL_H
#define RNGWL_H

#define RNGWL_REQUESTS   256
#define RNGWL_CHUNK      64
#define RNGWL_POOL_PAGES 32
#define RNGWL_BUFS       8

enum rngwl_mode { RNGWL_STRICT, RNGWL_LAZY };
int rng_workload(const char *tag, enum rngwl_mode mode);

#endif
