/* The common start of the virtio-rng programs (see virtio.h). */
#include "console.h"
#include "virtio.h"

u64 virtio_rng_start(struct virtio_dev *v, const char *tag)
{
    puts_(tag);
    puts_(" start\n");
    virtio_open(v, tag, 0x1044, 0x1005);
    virtio_negotiate(v, 0);
    virtio_dma_setup(v);
    virtio_setup_queue0(v);
    return v->z.info.sdma + ((u64)VIRTIO_IOVA_FIRST_FREE_PAGE << 12);
}
