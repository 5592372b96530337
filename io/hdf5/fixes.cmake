# bioedge's fixes for three bugs of the HDF5 2.2 C library that fuzzing found (docs/decisions.md §14;
# the inputs are in fuzz/regressions/hdf5/).
#
# hdf5-metno-src builds HDF5 with CMake; .cargo/config.toml hands CMake this file as its toolchain
# file (CMAKE_TOOLCHAIN_FILE), the one hook that reaches that build without changing the crate. At
# the end of HDF5's configure step three of its sources are swapped for patched copies in the build
# directory. Each fix names the text it replaces; if that text is not found exactly once (another
# HDF5 version), the build stops with a message instead of building an unfixed library. A build
# that brings its own toolchain file (cross-compiling) should include() this one from it.

get_property(_bioedge_deferred GLOBAL PROPERTY BIOEDGE_HDF5_FIXES_DEFERRED)
if(NOT _bioedge_deferred)
  set_property(GLOBAL PROPERTY BIOEDGE_HDF5_FIXES_DEFERRED TRUE)
  cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _bioedge_hdf5_fixes)
endif()

# replace OLD by NEW in the caller's variable `text`, which must hold OLD exactly once
function(_bioedge_fix name old new)
  string(FIND "${text}" "${old}" at)
  string(FIND "${text}" "${old}" last REVERSE)
  if(at EQUAL -1 OR NOT at EQUAL last)
    message(FATAL_ERROR "io/hdf5/fixes.cmake: the text to patch in ${name} is not there exactly once "
                        "(another HDF5 version?); update the fix, or drop it if HDF5 fixed the bug")
  endif()
  string(REPLACE "${old}" "${new}" text "${text}")
  set(text "${text}" PARENT_SCOPE)
endfunction()

function(_bioedge_hdf5_fixes)
  if(NOT TARGET hdf5-static OR NOT DEFINED HDF5_SRC_DIR)
    return() # not the HDF5 project (a try_compile, another CMake build)
  endif()
  set(out "${CMAKE_BINARY_DIR}/bioedge-fixes")
  get_target_property(sources hdf5-static SOURCES)

  # 1. A local heap's free list that points back into itself was followed forever, allocating one
  #    node per step. Each free block takes at least 2 lengths, so more blocks than that fit in the
  #    heap means a cycle.
  file(READ "${HDF5_SRC_DIR}/H5HLcache.c" text)
  _bioedge_fix(H5HLcache.c [==[    free_block = heap->free_block;
    while (H5HL_FREE_NULL != free_block) {
        const uint8_t *image; /* Pointer into image buffer */
]==] [==[    free_block = heap->free_block;
    size_t nblocks = 0; /* bioedge: free blocks seen so far */
    while (H5HL_FREE_NULL != free_block) {
        const uint8_t *image; /* Pointer into image buffer */

        /* bioedge: more free blocks than fit in the heap means the list loops */
        if (++nblocks > heap->dblk_size / (2 * heap->sizeof_size))
            HGOTO_ERROR(H5E_HEAP, H5E_BADRANGE, FAIL, "bad heap free list (it loops)");
]==])
  file(WRITE "${out}/H5HLcache.c" "${text}")

  # 2. A global heap object whose size leaves the parse pointer in place was a hang: the free-space
  #    object (index 0) of size 0, or any object whose aligned size wraps around to minus its header
  #    (2^64 - 20). The free-space object's size includes its header, so it is at least that; no
  #    object is larger than what is left of the heap.
  file(READ "${HDF5_SRC_DIR}/H5HGcache.c" text)
  _bioedge_fix(H5HGcache.c [==[            /* Make sure the extra padding doesn't cause us to overrun
             * the buffer
             */
            if (H5_IS_BUFFER_OVERFLOW(begin, need, p_end))]==] [==[            /* bioedge: no object is larger than what is left (a larger size can wrap `need` around) */
            if (heap->obj[idx].size > (size_t)(p_end - begin) + 1)
                HGOTO_ERROR(H5E_HEAP, H5E_BADVALUE, NULL, "global heap object larger than the heap");

            /* Make sure the extra padding doesn't cause us to overrun
             * the buffer
             */
            if (H5_IS_BUFFER_OVERFLOW(begin, need, p_end))]==])
  _bioedge_fix(H5HGcache.c [==[            else
                need = heap->obj[idx].size;
]==] [==[            else {
                need = heap->obj[idx].size;
                /* bioedge: the free-space object includes its header; smaller would not advance */
                if (need < H5HG_SIZEOF_OBJHDR(f))
                    HGOTO_ERROR(H5E_HEAP, H5E_BADVALUE, NULL, "global heap free space smaller than its header");
            }
]==])
  file(WRITE "${out}/H5HGcache.c" "${text}")

  # 3. A variable-length element's declared length was allocated (and zeroed) before the data was
  #    read: 4 G elements from a 16-byte element. The sequence is one global heap object of at least
  #    one byte per element, so the length is checked against that object's size first.
  file(READ "${HDF5_SRC_DIR}/H5Tvlen.c" text)
  _bioedge_fix(H5Tvlen.c [==[#include "H5VLprivate.h" /* Virtual Object Layer                     */
]==] [==[#include "H5VLprivate.h" /* Virtual Object Layer                     */
#include "H5Fprivate.h"  /* bioedge: files (address decoding)   */
#include "H5HGprivate.h" /* bioedge: global heaps (object size) */
]==])
  _bioedge_fix(H5Tvlen.c [==[H5T__vlen_disk_getlen(H5VL_object_t H5_ATTR_UNUSED *file, const void *_vl, size_t *seq_len)
{
    const uint8_t *vl = (const uint8_t *)_vl; /* Pointer to the user's hvl_t information */

    FUNC_ENTER_PACKAGE_NOERR

    /* Check parameters */
    assert(vl);
    assert(seq_len);

    /* Get length of sequence (different from blob size) */
    UINT32DECODE(vl, *seq_len);

    FUNC_LEAVE_NOAPI(SUCCEED)
}]==] [==[H5T__vlen_disk_getlen(H5VL_object_t *file, const void *_vl, size_t *seq_len)
{
    const uint8_t *vl        = (const uint8_t *)_vl; /* Pointer to the user's hvl_t information */
    bool           is_native = false;
    herr_t         ret_value = SUCCEED;

    FUNC_ENTER_PACKAGE

    /* Check parameters */
    assert(vl);
    assert(seq_len);

    /* Get length of sequence (different from blob size) */
    UINT32DECODE(vl, *seq_len);

    /* bioedge: the declared length must fit in the global heap object that holds the sequence
     * (at least one byte per element), checked before anyone allocates it */
    if (*seq_len > 0 && file != NULL) {
        if (H5VL_object_is_native(file, &is_native) < 0)
            HGOTO_ERROR(H5E_DATATYPE, H5E_CANTGET, FAIL, "can't query VOL connector");
        if (is_native) {
            H5F_t *f         = (H5F_t *)H5VL_object_data(file);
            H5HG_t hobjid;
            size_t hobj_size = 0;

            H5F_addr_decode(f, &vl, &hobjid.addr);
            UINT32DECODE(vl, hobjid.idx);
            if (hobjid.addr == 0)
                HGOTO_ERROR(H5E_DATATYPE, H5E_BADVALUE, FAIL, "variable-length sequence of %zu elements has no data",
                            *seq_len);
            if (H5HG_get_obj_size(f, &hobjid, &hobj_size) < 0)
                HGOTO_ERROR(H5E_DATATYPE, H5E_CANTGET, FAIL, "can't get variable-length sequence's heap object size");
            if (*seq_len > hobj_size)
                HGOTO_ERROR(H5E_DATATYPE, H5E_BADVALUE, FAIL,
                            "variable-length sequence of %zu elements in a heap object of %zu bytes", *seq_len,
                            hobj_size);
        }
    }

done:
    FUNC_LEAVE_NOAPI(ret_value)
}]==])
  file(WRITE "${out}/H5Tvlen.c" "${text}")

  foreach(name H5HLcache.c H5HGcache.c H5Tvlen.c)
    list(FIND sources "${HDF5_SRC_DIR}/${name}" at)
    if(at EQUAL -1)
      message(FATAL_ERROR "io/hdf5/fixes.cmake: ${name} is not a source of hdf5-static")
    endif()
    list(REMOVE_AT sources ${at})
    list(INSERT sources ${at} "${out}/${name}")
  endforeach()
  set_property(TARGET hdf5-static PROPERTY SOURCES "${sources}")
  message(STATUS "bioedge: HDF5 built with the fixes of io/hdf5/fixes.cmake")
endfunction()
