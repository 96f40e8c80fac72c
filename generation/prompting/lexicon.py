"""Word lists for search tags: English by lexicon only, Chinese lexicon words before jieba's tags.

English entries are base forms (``extract_tags`` strips -s/-es/-ing/-ed); multiword entries are
matched as phrases. Keep each word in one category only.
"""

from __future__ import annotations


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


EN_SUBJECT = _words(
    """
    student teacher girl boy child kid baby toddler teenager friend classmate shopper customer
    woman man person people family mother father mom dad parent grandmother grandfather grandma
    grandpa sister brother daughter son couple doctor nurse chef athlete player coach
    firefighter farmer artist musician dancer hero princess prince king queen wizard robot
    dragon dog puppy cat kitten bird horse rabbit bear fox panda lion elephant fish butterfly
    coat dress jacket sneaker shoe boot hat cap scarf sweater shirt hoodie jeans skirt uniform
    glasses sunglasses backpack bag handbag umbrella book ball bicycle bike car bus train phone
    laptop cup mug gift present cake flower toy wallet lantern kite balloon guitar
    """
)
EN_ACTION = _words(
    """
    walk run share help apologise smile wear dance jump play sing laugh cry hug wave read write
    draw paint cook bake eat drink sleep swim climb fly ride drive shop buy sell give hold open
    carry throw catch kick sit stand listen talk speak learn teach study explore discover
    celebrate return find lose cheer clap hide search wait meet greet thank forgive try show
    unbox pour spin skate surf ski hike build plant clean fix race chase rescue protect comfort
    """
)
EN_ENVIRONMENT = _words(
    """
    street road classroom school park beach city forest kitchen dusk night dawn morning sunset
    sunrise evening afternoon noon rain snow home house bedroom garden playground library office
    store mall market supermarket cafe restaurant mountain river lake ocean sea desert village
    countryside farm zoo museum station airport stadium studio stage hospital sky field meadow
    winter summer autumn rooftop alley bridge harbor island jungle campus corridor hallway
    downtown neighborhood paris london tokyo beijing shanghai
    """
)
EN_STYLE = _words(
    """
    cinematic anime watercolor documentary storybook realistic photorealistic 3d cartoon
    claymation noir vintage retro minimalist pastel sketch comic manga cyberpunk fantasy dreamy
    surreal hand-drawn illustration illustrated monochrome vibrant moody epic handheld timelapse
    commercial editorial lo-fi steampunk whimsical
    """
)
EN_PHRASES: dict[str, str] = {
    "new york": "environment",
    "hong kong": "environment",
    "los angeles": "environment",
    "san francisco": "environment",
    "times square": "environment",
    "living room": "environment",
    "coffee shop": "environment",
    "train station": "environment",
    "golden hour": "environment",
    "blue hour": "environment",
    "oil painting": "style",
    "pixel art": "style",
    "low poly": "style",
    "stop motion": "style",
    "black and white": "style",
    "slow motion": "style",
    "film noir": "style",
    "product showcase": "style",
    "ice cream": "subject",
    "teddy bear": "subject",
}
# Irregular forms and spelling variants -> the lexicon's base form.
EN_BASE_FORMS: dict[str, str] = {
    "children": "child",
    "men": "man",
    "women": "woman",
    "people": "people",
    "ran": "run",
    "wore": "wear",
    "worn": "wear",
    "sang": "sing",
    "sung": "sing",
    "ate": "eat",
    "eaten": "eat",
    "drank": "drink",
    "slept": "sleep",
    "swam": "swim",
    "flew": "fly",
    "flies": "fly",
    "rode": "ride",
    "drove": "drive",
    "bought": "buy",
    "sold": "sell",
    "gave": "give",
    "given": "give",
    "held": "hold",
    "threw": "throw",
    "caught": "catch",
    "sat": "sit",
    "stood": "stand",
    "spoke": "speak",
    "taught": "teach",
    "found": "find",
    "lost": "lose",
    "hid": "hide",
    "met": "meet",
    "built": "build",
    "wrote": "write",
    "drew": "draw",
    "apologize": "apologise",
    "watercolour": "watercolor",
    "colour": "color",
    "harbour": "harbor",
    "neighbourhood": "neighborhood",
    "grey": "gray",
    "stop-motion": "stop motion",
    "handdrawn": "hand-drawn",
    "mum": "mom",
    "sneakers": "sneaker",
    "trainers": "sneaker",
    "3-d": "3d",
}

# Chinese words jieba would tag as plain nouns (or split) but that belong elsewhere.
ZH_STYLE = _words(
    """
    电影感 电影风格 动画 动漫 卡通 水彩 水墨 油画 绘本 纪录片 写实 复古 赛博朋克 国风 唯美
    梦幻 黑白 素描 漫画 手绘 极简 治愈 童话 像素风 定格动画 慢动作 电影
    """
)
ZH_ENVIRONMENT = _words(
    """
    教室 学校 校园 操场 公园 街道 街头 马路 城市 森林 海边 沙滩 大海 厨房 客厅 卧室 家 家里
    商场 超市 商店 图书馆 医院 车站 机场 办公室 花园 山顶 河边 湖边 村庄 农场 动物园 博物馆
    电影院 舞台 夜晚 黄昏 清晨 早晨 傍晚 晚上 雨天 雪地 天空 草地 田野 小巷 广场 校门口 门口 海滩
    """
)
ZH_SUBJECT = _words("猫 狗 鸟 书 花 球 伞")
ZH_ACTION = _words("跑 跳 笑 哭 唱 画 写 读 飞 游 散步 奔跑 跳舞 购物 道歉 分享")
# Function words and words too general to search by.
ZH_STOP = _words(
    """
    们 时候 东西 事情 一个 这个 那个 自己 大家 什么 怎么 今天 明天 昨天 现在 以后 之前 当时
    一天 最后 里面 上面 下面 前面 后面 中间 旁边 外面 之间 之中 以上 以下 是 有 在 说 要 会
    能 让 把 被 给 来 去 做 到 得 开始 进行 觉得 可以 应该 需要 成为 没有 知道 出来 起来
    红色 蓝色 绿色 黄色 白色 黑色 紫色 粉色 橙色 灰色 颜色 感
    """
)
