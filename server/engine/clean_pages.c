/* clean_pages: a page faulted back from the store keeps its stored copy
 * while the guest only reads it (clean_pages.h). */
#include "clean_pages.h"

#include <linux/userfaultfd.h>

bool clean_copies_enabled = true;

bool clean_page_wanted(const struct vm *vm, const struct region *r, bool write)
{
	/* an evictable region is registered for write protection: its pages
	 * leave through it, and a write to a clean one faults */
	return clean_copies_enabled && !write && r->evictable && (vm->register_modes & UFFDIO_REGISTER_MODE_WP);
}

bool clean_copy_worth(const struct vm *vm, obj_id id)
{
	struct store_peek k;
	store_peek(vm->store, id, &k);
	if (k.tier != TIER_CACHE || k.refs > 1)
		return true;  /* it costs disk only, or stays for its other pages anyway */
	/* beside its page, it holds cache room that an evicted page could use */
	return k.len < CODEC_PAGE && store_has_spare_room(vm->store);
}

void clean_page_forget(struct vm *vm, struct region *r, uint64_t idx)
{
	page_entry e = r->pt.entries[idx];
	if (!pe_is_clean(e))
		return;
	/* the table lets go of the object before the store frees it */
	page_table_set(&r->pt, idx, pe_make(PAGE_RESIDENT, 0, 0));
	store_drop(vm->store, (obj_id)pe_handle(e));
}

void clean_pages_forget(struct vm *vm, struct region *r, uint64_t first, uint64_t count)
{
	for (uint64_t p = first; p < first + count && p < r->pt.npages; p++)
		clean_page_forget(vm, r, p);
}
