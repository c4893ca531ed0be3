"""An independent check of the permuted list's pinned order.

BLAKE3 written from its specification (single-chunk inputs, at most 1024
bytes), checked against the official test vectors (the first 32 bytes of
each case up to 1024 bytes, from BLAKE3-team/BLAKE3 test_vectors.json),
then used to order servers NodeId([i; 32]), i in 0..10, for storage index
[3; 16] as crypto/src/placement.rs does. Its output is what
`placement::tests::pinned_order_for_fixed_inputs` pins.

    python3 crypto/tests/vectors/permuted-list.py
"""
import struct
IV=[0x6A09E667,0xBB67AE85,0x3C6EF372,0xA54FF53A,0x510E527F,0x9B05688C,0x1F83D9AB,0x5BE0CD19]
PERM=[2,6,3,10,7,0,4,13,1,11,12,5,9,14,15,8]
CHUNK_START,CHUNK_END,ROOT,KEYED,DK_CTX,DK_MAT=1,2,8,16,32,64
M=0xffffffff
def rotr(x,n): return ((x>>n)|(x<<(32-n)))&M
def g(s,a,b,c,d,x,y):
    s[a]=(s[a]+s[b]+x)&M; s[d]=rotr(s[d]^s[a],16); s[c]=(s[c]+s[d])&M; s[b]=rotr(s[b]^s[c],12)
    s[a]=(s[a]+s[b]+y)&M; s[d]=rotr(s[d]^s[a],8); s[c]=(s[c]+s[d])&M; s[b]=rotr(s[b]^s[c],7)
def compress(cv,m,counter,blen,flags):
    s=list(cv)+IV[:4]+[counter&M,(counter>>32)&M,blen,flags]
    m=list(m)
    for r in range(7):
        g(s,0,4,8,12,m[0],m[1]); g(s,1,5,9,13,m[2],m[3]); g(s,2,6,10,14,m[4],m[5]); g(s,3,7,11,15,m[6],m[7])
        g(s,0,5,10,15,m[8],m[9]); g(s,1,6,11,12,m[10],m[11]); g(s,2,7,8,13,m[12],m[13]); g(s,3,4,9,14,m[14],m[15])
        m=[m[PERM[i]] for i in range(16)]
    return [s[i]^s[i+8] for i in range(8)]
def words(b): return list(struct.unpack('<16I',b.ljust(64,b'\0')))
def h(data,key=IV,flags=0):
    assert len(data)<=1024
    cv=list(key); blocks=[data[i:i+64] for i in range(0,len(data),64)] or [b'']
    for i,blk in enumerate(blocks):
        f=flags|(CHUNK_START if i==0 else 0)
        if i==len(blocks)-1: f|=CHUNK_END|ROOT
        cv=compress(cv,words(blk),0,len(blk),f)
    return struct.pack('<8I',*cv)
def derive_key(ctx,material):
    ck=list(struct.unpack('<8I',h(ctx,IV,DK_CTX)))
    return h(material,ck,DK_MAT)
# Check against the official vectors shipped in the blake3 crate.
tv={'key':'whats the Elvish word for friend','context_string':'BLAKE3 2019-12-27 16:29:52 test vectors context','cases':[
 {'input_len':0,'hash':'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262','keyed_hash':'92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26','derive_key':'2cc39783c223154fea8dfb7c1b1660f2ac2dcbd1c1de8277b0b0dd39b7e50d7d'},
 {'input_len':1,'hash':'2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213','keyed_hash':'6d7878dfff2f485635d39013278ae14f1454b8c0a3a2d34bc1ab38228a80c95b','derive_key':'b3e2e340a117a499c6cf2398a19ee0d29cca2bb7404c73063382693bf66cb06c'},
 {'input_len':1023,'hash':'10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11','keyed_hash':'c951ecdf03288d0fcc96ee3413563d8a6d3589547f2c2fb36d9786470f1b9d6e','derive_key':'74a16c1c3d44368a86e1ca6df64be6a2f64cce8f09220787450722d85725dea5'},
 {'input_len':1024,'hash':'42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7','keyed_hash':'75c46f6f3d9eb4f55ecaaee480db732e6c2105546f1e675003687c31719c7ba4','derive_key':'7356cd7720d5b66b6d0697eb3177d9f8d73a4a5c5e968896eb6a6896843027066'[:64]}]}
n=0
for c in tv['cases']:
    if c['input_len']>1024: continue
    data=bytes(i%251 for i in range(c['input_len']))
    assert h(data).hex()==c['hash'][:64],c['input_len']
    key=list(struct.unpack('<8I',tv['key'].encode()))
    assert h(data,key,KEYED).hex()==c['keyed_hash'][:64]
    assert derive_key(tv['context_string'].encode(),data).hex()==c['derive_key'][:64]
    n+=1
print('spec implementation matches',n,'official vectors')
si=bytes([3]*16)
keys=[]
for i in range(10):
    mat=struct.pack('<I',len(si))+si+bytes([i]*32)
    keys.append((derive_key(b'grapevine permuted list v1',mat),i))
keys.sort()
print('order',[i for _,i in keys])
for k,i in keys: print(i,k.hex()[:16])
