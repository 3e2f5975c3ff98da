/* One device-writable buffer page of a virtio program (see virtio.h); its own
 * object, so only the programs that use it link it. */
#include "virtio.h"
#include "dma.h"

void virtio_buffer_map(struct virtio_dev *v, u64 iova, const void *page)
{
    if (v->platform) {                     /* the device writes: no protection bit */
        dma_map(iova, page, 0);
        zpci_refresh(v, iova, 0x1000);
    }
}

void virtio_buffer_unmap(struct virtio_dev *v, u64 iova)
{
    if (v->platform) {
        dma_unmap(iova);
        zpci_refresh(v, iova, 0x1000);
    }
}
