/* huge_pages: eviction and restore of whole huge pages (huge_pages.h). */
#include "huge_pages.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>

#include "fault.h"
#include "log.h"
#include "uffd.h"

/* The buffer a huge page is read into to be evicted: apart from page_buf,
 * which a fault may hold content in while it makes room. */
static void *evict_buf(struct vm *vm, size_t len)
{
	if (vm->eng.huge_buf_size < len) {
		if (vm->eng.huge_buf)
			munmap(vm->eng.huge_buf, vm->eng.huge_buf_size);
		vm->eng.huge_buf_size = 0;
		vm->eng.huge_buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (vm->eng.huge_buf == MAP_FAILED) {
			vm->eng.huge_buf = NULL;
			return NULL;
		}
		vm->eng.huge_buf_size = len;
	}
	return vm->eng.huge_buf;
}

/* Drops the store's objects of entries parts[0..n) let go of already. */
static void drop_parts(struct vm *vm, const page_entry *parts, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (pe_holds_object(parts[i]))
			store_drop(vm->store, (obj_id)pe_handle(parts[i]));
}

void huge_release(struct vm *vm, struct region *r, uint64_t idx)
{
	uint64_t n = region_parts(r), first = idx * n;
	if (!r->parts.entries || n > HUGE_MAX_PARTS)
		return;
	page_entry was[HUGE_MAX_PARTS];
	for (uint64_t i = 0; i < n; i++) {
		was[i] = r->parts.entries[first + i];
		if (pe_state(was[i]) != PAGE_NEVER)
			page_table_set(&r->parts, first + i, pe_make(PAGE_NEVER, 0, 0));
	}
	drop_parts(vm, was, n);  /* the table let go first: a crash now leaks, never dangles */
}

uint64_t huge_evict(struct vm *vm, struct region *r, uint64_t idx, struct evict_result *res, int *err)
{
	const uint64_t ps = r->page_size, n = region_parts(r), first = idx * n;
	const uint64_t addr = r->host_addr + idx * ps;
	uint8_t *buf = evict_buf(vm, ps);
	if (!buf || !r->parts.entries || n > HUGE_MAX_PARTS) {
		*err = -ENOMEM;
		return 0;
	}
	int ret = evict_writeprotect(vm, addr, ps, true);
	if (ret) {
		*err = ret;
		return 0;
	}
	ret = region_pread(vm, r, idx, ps, buf);
	uint64_t done = 0, zero = 0, stored_bytes = 0;
	int store_ret = 0;
	page_entry parts[HUGE_MAX_PARTS] = { 0 };
	for (; !ret && done < n; done++) {
		store_ret = evict_store_page(vm, buf + done * HUGE_PART_BYTES, HUGE_PART_BYTES, &parts[done], &stored_bytes);
		if (store_ret)
			break;
		zero += pe_state(parts[done]) == PAGE_ZERO;
	}
	if (!ret && done == n) {
		/* the parts, then the page's entry, then the punch (huge_pages.h);
		 * the copy kept from its last fault goes once the new one is in */
		page_entry kept[HUGE_MAX_PARTS];
		for (uint64_t i = 0; i < n; i++) {
			kept[i] = r->parts.entries[first + i];
			page_table_set(&r->parts, first + i, parts[i]);
		}
		drop_parts(vm, kept, n);
		page_table_set(&r->pt, idx, pe_make(PAGE_STORED, 0, 0));
		ret = region_drop(vm, r, idx, 1);
		if (ret) {
			/* nothing punched: the page stays resident, the new parts
			 * its kept copy */
			page_table_set(&r->pt, idx, pe_make(PAGE_RESIDENT, 0, 0));
			huge_keep_parts(r, idx);
		}
	} else {
		drop_parts(vm, parts, done);  /* a part the store refused: the page stays whole, resident */
		if (!ret)
			ret = store_ret;
	}
	/* unprotected either way: a punched page keeps its protection in a
	 * PTE marker otherwise (evict.c) */
	int wp = evict_writeprotect(vm, addr, ps, false);
	if (!ret)
		ret = wp;
	if (ret && uffd_vmm_gone(ret))
		fault_vmm_gone(vm, ret);
	if (pe_state(r->pt.entries[idx]) != PAGE_STORED) {
		*err = ret ? ret : -EIO;
		return 0;
	}
	vm_policy_gone(vm, r, idx);
	atomic_fetch_sub(&vm->resident_bytes, ps);
	ctr_add(&vm->ctr.evictions_total, n);
	res->pages += n;
	res->zero_pages += zero;
	res->stored_pages += n - zero;
	res->stored_bytes += stored_bytes;
	*err = 0;
	return n;
}

void huge_keep_parts(struct region *r, uint64_t idx)
{
	uint64_t n = region_parts(r), first = idx * n;
	for (uint64_t i = 0; i < n; i++) {
		page_entry e = r->parts.entries[first + i];
		/* a zero part needs no copy to be found again */
		page_table_set(&r->parts, first + i, pe_state(e) == PAGE_STORED ? pe_arriving(e) : pe_make(PAGE_NEVER, 0, 0));
	}
}

int huge_gather(struct vm *vm, const struct region *r, uint64_t idx, void *buf)
{
	uint64_t n = region_parts(r), first = idx * n;
	for (uint64_t i = 0; i < n; i++) {
		page_entry e = r->parts.entries[first + i];
		uint8_t *part = (uint8_t *)buf + i * HUGE_PART_BYTES;
		if (pe_state(e) != PAGE_STORED) {
			memset(part, 0, HUGE_PART_BYTES);  /* PAGE_ZERO */
			continue;
		}
		int ret = store_get(vm->store, vm->eng.codec_ctx, (obj_id)pe_handle(e), part);
		if (ret)
			return ret;
	}
	return 0;
}

/* Maps page idx of r's file shared, for memsrv to read or write it. */
static uint8_t *map_file_page(const struct region *r, uint64_t idx)
{
	void *p = mmap(NULL, r->page_size, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd,
		       (off_t)(r->fd_offset + idx * r->page_size));
	return p == MAP_FAILED ? NULL : p;
}

int huge_write_file(const struct region *r, uint64_t idx, const void *buf)
{
	uint8_t *p = map_file_page(r, idx);
	if (!p)
		return -errno;
	memcpy(p, buf, r->page_size);
	munmap(p, r->page_size);
	return 0;
}

int huge_reappeared(struct vm *vm, const struct region *r, uint64_t idx, const void *ours)
{
	off_t off = (off_t)(r->fd_offset + idx * r->page_size);
	ctr_add(&vm->ctr.eexist_wakes, 1);
	/* allocating the page fails with ENOSPC when none is to be had; if
	 * it succeeds the page is there now, zeros if we made it */
	if (fallocate(r->fd, FALLOC_FL_KEEP_SIZE, off, r->page_size))
		return -errno;
	uint8_t *p = map_file_page(r, idx);
	if (!p)
		return -errno;
	bool put_back = page_is_zero(p, r->page_size) && !page_is_zero(ours, r->page_size);
	if (put_back)
		memcpy(p, ours, r->page_size);
	munmap(p, r->page_size);
	vm_warn_ratelimited(vm, "huge page at 0x%" PRIx64 " was there before memsrv placed it: %s",
			    r->host_addr + idx * r->page_size,
			    put_back ? "zeros there, the guest's data put back" : "written there, the new content kept");
	return 0;
}
